"""Real `dask scheduler` / `dask worker` processes on loopback, for tests; each in its own
process group so a test can SIGKILL one and the cleanup leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 2, *, worker_args: tuple[str, ...] = (),
                 scheduler_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 hosts: tuple[str, ...] = ("127.0.0.1",)) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A scheduler on 127.0.0.1 and `workers` workers (on `hosts`, round robin); yields
    (address, [scheduler, worker, ...]) and stops them all."""
    scheduler_file = folder / "scheduler.json"
    environ = {**os.environ, **(env or {})}
    protocol_host = "127.0.0.1"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", protocol_host, "--port", "0",
                               "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file),
                               *scheduler_args], env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        deadline = time.monotonic() + 30
        while not (scheduler_file.exists() and scheduler_file.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.25)
        address = json.loads(scheduler_file.read_text())["address"]
        for index in range(workers):
            host = hosts[index % len(hosts)]
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--host", host,
                                           "--dashboard-address", f"{host}:0", *worker_args], env=environ,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        yield address, procs
    finally:
        stop(procs)


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_workers(address: str, count: int, timeout: float = 60, **client_options) -> None:
    from distributed import Client

    with Client(address, timeout=30, **client_options) as client:
        client.wait_for_workers(count, timeout=timeout)
