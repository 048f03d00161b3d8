"""What the store gives back: typed rows (the JSON columns decoded)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

JSON_COLUMNS = ("params", "times_s", "workers", "detail")


@dataclass(frozen=True)
class JobRow:
    """One job of a run as recorded: what it was (op, params, dtype, data), where the plan put it
    and what it predicted, what it measured (`measured_s`, the median of `times_s`), how it ended
    (`status`, `attempts`, `error`), where it ran (`workers`), and `detail`: its check, devices,
    threads, the sentinel's probes around it and every failed attempt (`failures`)."""

    run_id: str
    name: str
    op: str
    params: dict[str, Any]
    status: str
    position: int = 0
    dtype: str | None = None
    data: str | None = None
    placement: str | None = None
    predicted_s: float | None = None
    measured_s: float | None = None
    times_s: list[float] | None = None
    attempts: int = 0
    workers: list[str] | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    started: str | None = None
    finished: str | None = None

    @classmethod
    def from_db(cls, row: Any) -> JobRow:
        """From an sqlite3.Row (or a mapping) of the jobs table; columns it does not know (a
        query's own) are left out."""
        data = dict(row)
        for key in JSON_COLUMNS:
            data[key] = json.loads(data[key]) if data.get(key) else None
        data["detail"] = data["detail"] or {}
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    @property
    def failures(self) -> list[dict[str, Any]]:
        return self.detail.get("failures", [])

    @property
    def sentinel(self) -> Any:
        """The sentinel's probes recorded with it (as stored: checked by `noise.valid`)."""
        return self.detail.get("sentinel")


@dataclass
class RunSummary:
    run_id: str
    workload: str
    status: str
    done: int
    total: int
    started: str
