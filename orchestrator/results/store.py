"""Runs and jobs in SQLite (`$ORCH_HOME/results.db`, WAL, synchronous=FULL).

A job's row is keyed by (run_id, job name) and written with an upsert, so recording the same
job twice never makes a second row; each finished job is committed before it is reported.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import paths

SCHEMA = """
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
    versions TEXT,
    learn INTEGER NOT NULL DEFAULT 1,
    hardware TEXT,
    makespan_s REAL
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
NEWER_RUN_COLUMNS = {"learn": "INTEGER NOT NULL DEFAULT 1", "hardware": "TEXT", "makespan_s": "REAL"}
JOB_COLUMNS = ("name", "position", "op", "params", "dtype", "data", "placement", "predicted_s", "measured_s",
               "times_s", "status", "attempts", "workers", "error", "detail", "started", "finished")


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass
class RunSummary:
    run_id: str
    workload: str
    status: str
    done: int
    total: int
    started: str


class ResultStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.orch_home() / "results.db"
        fresh = not self.path.exists()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        if fresh:
            os.chmod(self.path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
        for column, kind in NEWER_RUN_COLUMNS.items():  # a store written by an older orch
            if column not in columns:
                self._db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def start_run(self, run_id: str, *, workload: str, path: str, sha256: str, profile: str, backend: str,
                  address: str | None, jobs: list[dict[str, Any]], versions: dict[str, str], learn: bool = True,
                  hardware: dict[str, Any] | None = None, makespan_s: float | None = None) -> None:
        """`hardware`: the profile data the plan was made for (what `orch report` draws)."""
        with self._tx() as db:
            db.execute("INSERT INTO runs (run_id, workload, workload_path, workload_sha256, profile, backend, address, "
                       "status, total, started, finished, pid, versions, learn, hardware, makespan_s) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (run_id, workload, path, sha256, profile, backend, address, "running", len(jobs), now(), None,
                        os.getpid(), json.dumps(versions), int(learn), json.dumps(hardware) if hardware else None,
                        makespan_s))
            for position, job in enumerate(jobs):
                db.execute("INSERT INTO jobs (run_id, name, position, op, params, dtype, data, placement, predicted_s, "
                           "status, attempts) VALUES (?,?,?,?,?,?,?,?,?,?,0) ON CONFLICT(run_id, name) DO NOTHING",
                           (run_id, job["name"], position, job["op"], json.dumps(job["params"]), job["dtype"],
                            job["data"], job["placement"], job["predicted_s"], job.get("status", "pending")))

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
            db.executemany("UPDATE jobs SET status = 'running', started = ? WHERE run_id = ? AND name = ?",
                           [(now(), run_id, name) for name in names])

    def reopen_run(self, run_id: str) -> None:
        """A resumed run is running again, in this process."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status = 'running', finished = NULL, pid = ? WHERE run_id = ?",
                       (os.getpid(), run_id))

    def finish_run(self, run_id: str, status: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET status = ?, finished = ? WHERE run_id = ?", (status, now(), run_id))

    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def jobs(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM jobs WHERE run_id = ? ORDER BY position", (run_id,)).fetchall()
        return [_decoded(row) for row in rows]

    def job(self, run_id: str, name: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM jobs WHERE run_id = ? AND name = ?", (run_id, name)).fetchone()
        return _decoded(row) if row else None

    def jobs_for_profile(self, profile: str) -> tuple[list[dict[str, Any]], int]:
        """Every job of every run made with `profile` to learn from (not --no-learn), and how
        many runs that is."""
        rows = self._db.execute("SELECT j.* FROM jobs j JOIN runs r ON r.run_id = j.run_id WHERE r.profile = ? "
                                "AND r.learn = 1 ORDER BY r.started, j.position", (profile,)).fetchall()
        runs = self._db.execute("SELECT COUNT(*) FROM runs WHERE profile = ? AND learn = 1", (profile,)).fetchone()[0]
        return [_decoded(row) for row in rows], runs

    def runs(self) -> list[RunSummary]:
        """Newest first. A `running` run whose process is gone is reported `interrupted`."""
        rows = self._db.execute(
            "SELECT r.*, (SELECT COUNT(*) FROM jobs j WHERE j.run_id = r.run_id AND j.status IN ('ok', 'failed', 'skipped')) "
            "AS done FROM runs r ORDER BY r.started DESC, r.rowid DESC").fetchall()
        summaries = []
        for row in rows:
            status = row["status"]
            if status == "running" and not _alive(row["pid"]):
                status = "interrupted"
            summaries.append(RunSummary(row["run_id"], row["workload"], status, row["done"], row["total"], row["started"]))
        return summaries

    def latest_run_id(self) -> str | None:
        found = self.runs()
        return found[0].run_id if found else None


def _decoded(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    for key in ("params", "times_s", "workers", "detail"):
        job[key] = json.loads(job[key]) if job[key] else None
    return job


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
