"""A host's cores as capacity, shared by the worker processes of the embedded cluster.

The embedded Dask cluster has one CPU worker process per core. A job holds as many cores as it
runs threads before it starts (`Cores.held`): a one-thread job one core, so one-thread jobs run
side by side, one per worker; a job on every core all of them, so it runs alone. The plan
schedules the batch the same way (plan/schedule.py). Holding is a lock file per core (`flock`:
the kernel drops a dead process's locks, so a worker killed mid-job frees its cores):

- a one-core job locks its own worker's core file (`slot`: the worker's number, modulo the
  count), holding the gate shared while it waits;
- a wider job takes the gate exclusively, then locks the cores it needs in order; one wide job
  collects at a time, and narrow jobs wait behind it, so neither starves the other nor
  deadlocks (a core holder waits on nothing).

Worker processes run one task each at a time (one thread), so a core's lock is never asked for
twice in one process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cores:
    """`count` cores shared through lock files in `directory` (on the workers' host)."""

    directory: str
    count: int

    @classmethod
    def under(cls, parent: Path, count: int) -> Cores:
        """`count` cores shared through a new folder in `parent`."""
        parent.mkdir(parents=True, exist_ok=True)
        return cls(tempfile.mkdtemp(prefix="cores-", dir=parent), count)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _open(self, name: str) -> int:
        return os.open(Path(self.directory) / name, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def held(self, wanted: int | None, slot: int) -> Iterator[list[int]]:
        """Hold `wanted` cores (None or more than `count`: all) for the block; yields their
        numbers. `slot`: this worker's number, whose core a one-core job takes."""
        wanted = self.count if wanted is None else max(1, min(wanted, self.count))
        cores = [slot % self.count] if wanted == 1 else list(range(wanted))
        gate, files = self._open("gate"), []
        try:
            fcntl.flock(gate, fcntl.LOCK_SH if wanted == 1 else fcntl.LOCK_EX)
            for core in cores:
                files.append(self._open(f"core{core}"))
                fcntl.flock(files[-1], fcntl.LOCK_EX)
            fcntl.flock(gate, fcntl.LOCK_UN)
            yield cores
        finally:
            for descriptor in [*files, gate]:
                os.close(descriptor)  # closing drops its lock


def slot_of(name: object) -> int:
    """A worker's number from its name (LocalCluster: 0, 1, ...; a spec's "cpu-3": 3)."""
    digits = "".join(c for c in str(name).rpartition("-")[2] if c.isdigit())
    return int(digits) if digits else 0
