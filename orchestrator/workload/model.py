"""Pydantic models of the workload file (version 1) and the validated `Job` the planner reads."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, create_model, field_validator, model_validator

from orchestrator import ops
from orchestrator.placement import Placement
from orchestrator.workload.sizes import parse_size

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


def _check_name(value: Any) -> Any:
    if isinstance(value, str) and not _NAME.match(value):
        raise ValueError("must be 1-200 letters, digits, '_', '.' or '-'")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
Size = Annotated[int, BeforeValidator(parse_size)]
SWEEPABLE_COMMON = ("dtype", "seed", "data", "placement")


def _check_placement(value: Any) -> str:
    if value == "auto":
        return value
    return str(Placement.parse(value))


class JobCommon(BaseModel):
    """Fields every job has, whatever its op; also what `defaults:` may set."""

    model_config = ConfigDict(extra="forbid")

    dtype: Literal["float16", "bfloat16", "float32", "float64"] = "float32"
    # a count, or "auto": until the median's 95% interval is within +-5% (see AutoRepeats)
    repeats: Annotated[StrictInt, Field(ge=1, le=10_000)] | Literal["auto"] = 3
    warmup: Annotated[StrictInt, Field(ge=0, le=10_000)] = 1
    data: Literal["host", "device"] = "host"
    placement: Annotated[str, BeforeValidator(_check_placement)] = "auto"
    seed: Annotated[StrictInt, Field(ge=0)] = 0
    objective: Literal["time", "cost", "energy"] | None = None
    max_cost_usd: Annotated[float, Field(gt=0)] | None = None
    # re-runs after the job's own code raised; 0 = an exception fails the job at once (a dead
    # worker is a system failure, retried per `orch run --retries`, not counted here)
    retries_on_error: Annotated[StrictInt, Field(ge=0, le=10)] = 0


class JobBase(JobCommon):
    name: Name
    op: str

    @model_validator(mode="after")
    def _op_rules(self) -> JobBase:
        op = ops.get(self.op)
        if self.dtype not in op.dtypes:
            raise ValueError(f"dtype: {op.name} supports {', '.join(op.dtypes)} (got '{self.dtype}')")
        if self.placement != "auto":
            reason = op.where_not(Placement.parse(self.placement).kind)
            if reason:
                raise ValueError(f"placement: {op.name} cannot run on {self.placement}: {reason}")
        problem = op.invalid({name: getattr(self, name) for name in op.params})
        if problem:
            raise ValueError(problem)
        return self


@functools.cache
def job_model(op_name: str) -> type[JobBase]:
    """The pydantic model of one op's job: the common fields plus the op's size parameters."""
    op = ops.get(op_name)
    fields: dict[str, Any] = {}
    for pname, spec in op.params.items():
        kind = list[Size] if spec.kind == "size_list" else Size
        if spec.kind == "size_list":
            kind = Annotated[list[Size], Field(min_length=1, max_length=64)]
        fields[pname] = (kind, ... if spec.default is None else spec.default)
    return create_model(f"{op.name}_job", __base__=JobBase, **fields)


class WorkloadFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    name: Name
    defaults: dict[str, Any] | None = None
    jobs: Annotated[list[dict[str, Any]], Field(min_length=1)]

    @field_validator("defaults", mode="before")
    @classmethod
    def _defaults_mapping(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            raise ValueError("must be a mapping of job fields")
        return value


@dataclass(frozen=True)
class AutoRepeats:
    """`repeats: auto`: time executions until the 95% confidence interval of their median (by
    order statistics, distribution-free) is within +-`precision` of it, at least `least` of them,
    or until `budget_s` of timed executions is spent, at most `most`. Warm-up (of these and of
    every job with a warm-up, and every GPU job) first runs the workload's `warmup` count and then
    goes on, up to `warm_most` more or `warm_budget_s` of them, until `warm_agree` executions in
    a row agree within `warm_within`: until the caches, the allocator, the pages and the clocks
    are warm."""

    precision: float = 0.05
    least: int = 5
    most: int = 10_000
    budget_s: float = 2.0
    warm_within: float = 0.10
    warm_agree: int = 3
    warm_most: int = 20
    warm_budget_s: float = 0.5

    def expected(self, predicted_s: float) -> int:
        """Executions a plan counts on for a job predicted at `predicted_s` each: a quiet job
        stops after `least`; a noisy one runs to the budget."""
        return max(self.least, min(self.most, int(self.budget_s / 4 / max(predicted_s, 1e-9))))


AUTO = AutoRepeats()


@dataclass(frozen=True)
class Job:
    """One validated, sweep-expanded job."""

    name: str
    op: str
    params: dict[str, Any]
    dtype: str = "float32"
    repeats: int | str = 3  # or "auto"
    warmup: int = 1
    data: str = "host"
    placement: Placement | None = None  # None: auto, the planner chooses
    seed: int = 0
    objective: str | None = None
    max_cost_usd: float | None = None
    retries_on_error: int = 0
    source: str = ""  # "jobs[2]" — where in the file it came from


@dataclass
class Workload:
    name: str
    path: str
    sha256: str
    jobs: list[Job] = field(default_factory=list)
