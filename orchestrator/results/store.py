"""Runs and jobs in SQLite (`$ORCH_HOME/results.db`, WAL, synchronous=FULL).

A job's row is keyed by (run_id, job name) and written with an upsert, so recording the same
job twice never makes a second row; each finished job is committed before it is reported.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator import paths
from orchestrator.errors import EnvironmentUnavailable
from orchestrator.results.rows import JobRow, RunSummary
from orchestrator.results.status import JobStatus, RunStatus
from orchestrator.units import utc_now

# The schema as first shipped; later versions are migrations below.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workload TEXT NOT NULL,
    workload_path TEXT,
    workload_sha256 TEXT,
    profile TEXT,
    backend TEXT,
    address TEXT,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    pid INTEGER,
    versions TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    op TEXT NOT NULL,
    params TEXT NOT NULL,
    dtype TEXT,
    data TEXT,
    placement TEXT,
    predicted_s REAL,
    measured_s REAL,
    times_s TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    workers TEXT,
    error TEXT,
    detail TEXT,
    started TEXT,
    finished TEXT,
    PRIMARY KEY (run_id, name)
);
"""


def _add_run_column(name: str, kind: str) -> Callable[[sqlite3.Connection], None]:
    def migrate(db: sqlite3.Connection) -> None:
        # stores written before versions were kept (user_version 0) may have it already
        if name not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}:
            db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    return migrate


# Migration i takes a store from version i to i + 1 (PRAGMA user_version), in one transaction.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    lambda db: [db.execute(statement) for statement in SCHEMA_V1.split(";") if statement.strip()],  # 0 -> 1
    _add_run_column("learn", "INTEGER NOT NULL DEFAULT 1"),       # 1 -> 2: --no-learn runs
    _add_run_column("hardware", "TEXT"),                          # 2 -> 3: what a run was planned for
    _add_run_column("makespan_s", "REAL"),                        # 3 -> 4: the plan's makespan
    _add_run_column("probes", "TEXT"),                            # 4 -> 5: the sentinel at the run's end
]
SCHEMA_VERSION = len(MIGRATIONS)
JOB_COLUMNS = ("name", "position", "op", "params", "dtype", "data", "placement", "predicted_s", "measured_s",
               "times_s", "status", "attempts", "workers", "error", "detail", "started", "finished")


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the store to SCHEMA_VERSION, one migration a transaction; refuse a newer one."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        db.close()
        raise EnvironmentUnavailable(f"{path}: written by a newer orch (store version {version}; this orch "
                                     f"reads up to {SCHEMA_VERSION})", fix="upgrade orch, or point ORCH_HOME elsewhere")
    for step in range(version, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version = {step + 1}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


LEARN_PER_JOB = 16  # measurements of one distinct job that calibration learns from, newest first


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class ResultStore:
    """`read_only`: for commands that only read (`orch runs`, `orch report`); they work on a
    store in a folder the user may not write."""

    def __init__(self, path: Path | None = None, *, read_only: bool = False) -> None:
        self.path = path or paths.orch_home() / "results.db"
        try:
            self._db = self._open(read_only)
        except sqlite3.DatabaseError as exc:
            raise EnvironmentUnavailable(f"{self.path}: not a readable orch result store ({exc})",
                                         fix=f"move it aside (orch then starts a new one), e.g. mv {self.path} "
                                             f"{self.path}.broken") from None

    def _open(self, read_only: bool) -> sqlite3.Connection:
        writable = os.access(self.path.parent, os.W_OK) and (not self.path.exists() or os.access(self.path, os.W_OK))
        if read_only and not writable:
            if not self.path.exists():
                raise sqlite3.OperationalError("no results.db in a folder orch cannot write")
            # WAL needs its -shm file: a store nobody can write is opened as immutable
            db = sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("SELECT COUNT(*) FROM runs").fetchone()
            return db
        if not writable:
            raise EnvironmentUnavailable(f"{self.path}: orch cannot write its result store there",
                                         fix="make ORCH_HOME writable, or point ORCH_HOME elsewhere")
        fresh = not self.path.exists()
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        if fresh:
            os.chmod(self.path, 0o600)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.row_factory = sqlite3.Row
        _migrate(db, self.path)
        return db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            # "database or disk is full", "attempt to write a readonly database", ...: the cause
            # with the file, not a rollback's own complaint
            raise EnvironmentUnavailable(f"{self.path}: cannot write the result store ({exc})",
                                         fix="free disk space or make ORCH_HOME writable, then --resume the run") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # SQLite may already have rolled back (disk full)
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def lock_run(self, run_id: str) -> RunLock:
        """Hold `run_id` for this process (see RunLock); EnvironmentUnavailable when another
        live process holds it."""
        lock = RunLock(self.path.parent, run_id)
        if not lock.acquire():
            holder = lock.holder()
            raise EnvironmentUnavailable(f"run {run_id} is still live in process {holder or '(unknown)'} "
                                         f"(it holds {lock.path})", fix="wait for it to end, or stop that process")
        return lock

    def start_run(self, run_id: str, *, workload: str, path: str, sha256: str, profile: str, backend: str,
                  address: str | None, jobs: list[dict[str, Any]], versions: dict[str, str], learn: bool = True,
                  hardware: dict[str, Any] | None = None, makespan_s: float | None = None) -> None:
        """`hardware`: the profile data the plan was made for (what `orch report` draws)."""
        with self._tx() as db:
            db.execute("INSERT INTO runs (run_id, workload, workload_path, workload_sha256, profile, backend, address, "
                       "status, total, started, finished, pid, versions, learn, hardware, makespan_s) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (run_id, workload, path, sha256, profile, backend, address, "running", len(jobs), utc_now(), None,
                        os.getpid(), json.dumps(versions), int(learn), json.dumps(hardware) if hardware else None,
                        makespan_s))
            for position, job in enumerate(jobs):
                db.execute("INSERT INTO jobs (run_id, name, position, op, params, dtype, data, placement, predicted_s, "
                           "status, attempts) VALUES (?,?,?,?,?,?,?,?,?,?,0) ON CONFLICT(run_id, name) DO NOTHING",
                           (run_id, job["name"], position, job["op"], json.dumps(job["params"]), job["dtype"],
                            job["data"], job["placement"], job["predicted_s"], job.get("status", JobStatus.PENDING)))

    def record_job(self, run_id: str, name: str, **fields: Any) -> None:
        """Update one job's row; committed (fsync'd) before this returns."""
        self.record_jobs(run_id, [(name, fields)])

    def record_jobs(self, run_id: str, updates: list[tuple[str, dict[str, Any]]]) -> None:
        """Update several jobs' rows in one transaction (a group commit); keyed by (run, job), so
        recording a job twice never makes a second row."""
        with self._tx() as db:
            for name, fields in updates:
                fields = {key: json.dumps(value) if key in ("times_s", "workers", "detail") and value is not None
                          and not isinstance(value, str) else value for key, value in fields.items()}
                assignments = ", ".join(f"{key} = ?" for key in fields)
                db.execute(f"UPDATE jobs SET {assignments} WHERE run_id = ? AND name = ?",
                           (*fields.values(), run_id, name))

    def mark_running(self, run_id: str, names: list[str]) -> None:
        """Every submitted job, in one transaction."""
        with self._tx() as db:
            db.executemany("UPDATE jobs SET status = ?, started = ? WHERE run_id = ? AND name = ?",
                           [(JobStatus.RUNNING, utc_now(), run_id, name) for name in names])

    def reopen_run(self, run_id: str) -> None:
        """A resumed run is running again, in this process."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status = 'running', finished = NULL, pid = ? WHERE run_id = ?",
                       (os.getpid(), run_id))

    def set_learn(self, run_id: str, learn: bool) -> None:
        """Whether calibration may learn from this run's measurements."""
        with self._tx() as db:
            db.execute("UPDATE runs SET learn = ? WHERE run_id = ?", (int(learn), run_id))

    def finish_run(self, run_id: str, status: str, probes: list[dict[str, Any]] | None = None) -> None:
        """`probes`: the sentinel probed at the run's end (its jobs carry the others)."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status = ?, finished = ?, probes = COALESCE(?, probes) WHERE run_id = ?",
                       (status, utc_now(), json.dumps(probes) if probes else None, run_id))

    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def jobs(self, run_id: str) -> list[JobRow]:
        rows = self._db.execute("SELECT * FROM jobs WHERE run_id = ? ORDER BY position", (run_id,)).fetchall()
        return [JobRow.from_db(row) for row in rows]

    def job(self, run_id: str, name: str) -> JobRow | None:
        row = self._db.execute("SELECT * FROM jobs WHERE run_id = ? AND name = ?", (run_id, name)).fetchone()
        return JobRow.from_db(row) if row else None

    def jobs_for_profile(self, profile: str, per_job: int = LEARN_PER_JOB) -> tuple[list[JobRow], int]:
        """The jobs of the runs made with `profile` to learn from (not --no-learn), at most the
        newest `per_job` measurements of each distinct job (op, sizes, dtype, data, placement, thread
        count: each keeps its history), oldest first; and how many runs that is. A sweep run again
        and again adds no more than that: the refit after a run stays as fast as the history is
        varied, not as long as it is."""
        rows = self._db.execute(
            "SELECT * FROM (SELECT j.*, r.started AS run_started, ROW_NUMBER() OVER (PARTITION BY j.op, j.params, "
            "j.dtype, j.data, j.placement, json_extract(j.detail, '$.threads') "
            "ORDER BY r.started DESC, j.run_id DESC, j.position DESC) AS newest "
            "FROM jobs j JOIN runs r ON r.run_id = j.run_id WHERE r.profile = ? AND r.learn = 1 AND j.status = 'ok') "
            "WHERE newest <= ? ORDER BY run_started, run_id, position", (profile, per_job)).fetchall()
        runs = self._db.execute("SELECT COUNT(*) FROM runs WHERE profile = ? AND learn = 1", (profile,)).fetchone()[0]
        return [JobRow.from_db(row) for row in rows], runs

    def runs(self) -> list[RunSummary]:
        """Newest first. A `running` run whose process is gone is reported `interrupted`."""
        rows = self._db.execute(
            "SELECT r.*, (SELECT COUNT(*) FROM jobs j WHERE j.run_id = r.run_id AND j.status IN ('ok', 'failed', 'skipped')) "
            "AS done FROM runs r ORDER BY r.started DESC, r.rowid DESC").fetchall()
        summaries = []
        for row in rows:
            status = row["status"]
            if status == RunStatus.RUNNING and not RunLock(self.path.parent, row["run_id"]).held_elsewhere():
                status = RunStatus.INTERRUPTED
            summaries.append(RunSummary(row["run_id"], row["workload"], status, row["done"], row["total"], row["started"]))
        return summaries

    def latest_run_id(self) -> str | None:
        found = self.runs()
        return found[0].run_id if found else None


class RunLock:
    """An advisory lock (flock) on `locks/<run_id>.lock` in the store's folder, held by the process
    that runs the run for as long as it runs. The kernel drops it when that process ends however
    it ends, so liveness never rests on a PID that may have been reused, and two processes can
    never run (or resume) one run at once."""

    def __init__(self, home: Path, run_id: str) -> None:
        self.path = home / "locks" / f"{paths.safe_name(run_id, 'run')}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        paths.folder(self.path.parent, "run locks")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def held_elsewhere(self) -> bool:
        """Whether a live process other than this object holds the lock."""
        if not self.path.exists():
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def holder(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None
