"""What a run tells its display as it goes (`orch run`'s progress bar and warnings)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.results.status import JobStatus


@dataclass(frozen=True)
class Warned:
    """Something the user should know now (a cluster link in the clear, a busy machine)."""

    message: str


@dataclass(frozen=True)
class Planned:
    """The plan is recorded: `jobs` to run, `busy_s` the devices' predicted busy time in all."""

    run_id: str
    jobs: int
    busy_s: float
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Submitting:
    run_id: str


@dataclass(frozen=True)
class JobDone:
    """A job finished (ok or failed) or was skipped; `busy_s` is its share of the predicted total."""

    name: str
    status: JobStatus
    busy_s: float


RunEvent = Warned | Planned | Submitting | JobDone
Event = Callable[[RunEvent], None]
