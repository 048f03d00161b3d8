"""What crosses between the planner and a worker: one job as the harness runs it (`Task`), and what
its execution gives back (`JobResult`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from orchestrator.placement import Placement


@dataclass(frozen=True)
class Task:
    """One job as its worker runs it: the op and its parameters, where (`placement`), with what
    data (`host` or `device`), timed how (`warmup`, `repeats`: a count or "auto"), seeded, on
    `threads` cores (None: as the worker is), re-run `retries_on_error` times when it raises;
    its result `checked` against float64 (the profile's reference timings skip that). `key` is
    the engine's name for it (set where the engine needs it on the worker: Ray)."""

    name: str
    op: str
    params: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    placement: Placement = Placement("cpu")
    data: str = "host"
    repeats: int | str = 3
    warmup: int = 1
    seed: int = 0
    threads: int | None = None
    retries_on_error: int = 0
    key: str = ""
    checked: bool = True


@dataclass
class JobResult:
    """What one job's execution gives back: the median of its timed executions (`measured_s`)
    and each of them, its check (relative error; None where a user op has no check), where it
    ran (`devices`, `host`, `workers`: a gang's every member), on how many threads, the
    sentinel's probes of the machine's speed around it, its own failed tries before this one
    (`retries_on_error`), for a tiny job run with others in one engine task, that task, and the
    host cores it held while it ran (backends/cores.py)."""

    measured_s: float
    times_s: list[float]
    check: float | None
    devices: list[str]
    host: str
    threads: int | None = None
    pid: int | None = None
    sentinel: list[dict[str, Any]] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    group: str | None = None
    cores: list[int] | None = None  # the host's cores it held (the embedded cluster's CPU jobs)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for what carries only that (a group's journal is Dask worker events)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
