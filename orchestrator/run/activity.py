"""Other orch runs on this machine. Two runs measure each other (1.3-2x slower in one pair,
300-1000x in another, whose automatic refit then stored factors of 849-2975x). Every run holds a
lock file in a per-user folder of the system's temporary directory while it runs; a run that
sees another's lock held says so and is not learnt from.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path

CHECK_EVERY_S = 2.0


class MachineActivity:
    """This run's presence on the machine, and the other runs seen while it lasts."""

    def __init__(self, run_id: str, folder: Path | None = None) -> None:
        self.folder = folder or Path(tempfile.gettempdir()) / f"orch-{os.getuid()}" / "active"
        self.path = self.folder / f"{run_id}.lock"
        self.seen: dict[str, str] = {}  # lock file name -> who holds it
        self._fd: int | None = None
        self._checked = 0.0

    def __enter__(self) -> MachineActivity:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        home = os.environ.get("ORCH_HOME", "~/.orch")
        os.write(self._fd, f"process {os.getpid()}, ORCH_HOME {home}".encode())
        self.check(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None

    def check(self, force: bool = False) -> list[str]:
        """Runs newly seen since the last check (at most every CHECK_EVERY_S unless forced)."""
        now = time.monotonic()
        if not force and now - self._checked < CHECK_EVERY_S:
            return []
        self._checked = now
        new = []
        for other in self.folder.glob("*.lock"):
            if other == self.path or other.name in self.seen:
                continue
            try:
                fd = os.open(other, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                self.seen[other.name] = (other.read_text(errors="replace") or "an orch run").strip()
                new.append(self.seen[other.name])
            finally:
                os.close(fd)
        return new
