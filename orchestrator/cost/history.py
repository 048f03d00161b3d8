"""The history tier: recorded runs of the very size a job asks about (op, placement, dtype,
data, every parameter). Their timed executions' median, after dropping those more than
OUTLIER_MADS from it; at least MIN_HISTORY_SAMPLES executions. A size with fewer steady ones
adds the fastest executions of its jobs disturbed while they ran. `basis: history`."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.results.rows import JobRow
from orchestrator.results.status import JobStatus

MIN_HISTORY_SAMPLES = 3  # timed executions at one size before history answers for it
OUTLIER_MADS = 3.0       # an execution this many (normal-scaled) MADs from the median is dropped,
OUTLIER_MIN_SAMPLES = 5  # where there are at least this many (the median alone below)


class Measured(BaseModel):
    """The history tier: one job as recorded at this very size."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    op: str
    placement: str
    dtype: str
    data: str
    params: dict[str, Any]
    centre_s: float = Field(gt=0)  # median of the executions kept
    samples: int                   # executions kept
    dropped: int = 0               # outliers left out
    spread: float = 0.0            # MAD / centre of those kept
    # the threads it ran on, on one CPU (1 where the plan chose one thread, or on a one-core CPU);
    # None on a GPU, across nodes, or where files from before recorded none
    threads: int | None = None


def history_key(op: str, placement: str, dtype: str, data: str, params: dict[str, Any],
                threads: int | None = None) -> tuple[str, ...]:
    """A job's size on a placement, on one thread ("1") or on more ("n"; "" where no count was
    recorded): a job's two thread counts are two histories (on this VM's MKL qr of 2048 x 256
    float64 took 33 ms on both cores and 21 on one, docs/benchmarks.md 2.16)."""
    count = "" if not threads else "1" if threads == 1 else "n"
    return (op, placement, dtype, data, json.dumps(params, sort_keys=True), count)


NORMAL_MAD = 1.4826  # a normal distribution's standard deviation over its median absolute deviation
# A job whose executions spread more than this (normal-scaled MAD / median) was disturbed while
# it ran, between the sentinel's probes: a batched_matmul timed 0.54, 3.1, 0.24, 1.6, 0.22, 1.3
# and 0.19 ms (spread 0.96; it runs 0.19) taught its group 3.0x and put every held-out batch of
# that dtype at 3x its time. Of 4,553 recorded jobs on the 2-core VM, half spread under 0.04,
# 98% under 0.23.
DISTURBED_SPREAD = 0.25
# A job is judged disturbed only where its executions' MAD is at least this long, which
# depends on how many there are. Of fewer than OUTLIER_MIN_SAMPLES the MAD is the nearer one's
# distance: a 10 µs user op's jitter read as disturbed and never got history, while the demo's
# matmul of 512 timed 5.9, 7.0 and 1.6 ms (it runs 0.19) and became its size's history (100 µs).
# Of more, a 10-20 µs dot or GEMM on a busy 2-core CI machine spread past DISTURBED_SPREAD by
# microseconds of jitter, and had no history after a quiet-looking run (20 µs).
DISTURBED_MAD_S = {"few": 1e-4, "many": 2e-5}


def recorded(row: JobRow) -> bool:
    """A job that ran and was timed: ok, measured, placed."""
    return row.status == JobStatus.OK and bool(row.measured_s) and bool(row.placement)


def learnable(row: JobRow) -> bool:
    """A recorded job both tiers learn from as it was measured: ok, measured, placed, and not
    disturbed while it ran: its executions within DISTURBED_SPREAD of each other (judged only
    where their MAD is DISTURBED_MAD_S or more). A disturbed one counts only by its `fastest`
    executions, where nothing steadier is recorded (history_from; refit.samples_from)."""
    if not recorded(row):
        return False
    times = _times(row)
    if len(times) < 3:
        return True
    middle, mad = _deviation(times)
    floor = DISTURBED_MAD_S["few" if len(times) < OUTLIER_MIN_SAMPLES else "many"]
    return mad < floor or NORMAL_MAD * mad / middle <= DISTURBED_SPREAD


def _deviation(values: list[float]) -> tuple[float, float]:
    """The median of the values and their median absolute deviation from it."""
    middle = statistics.median(values)
    return middle, statistics.median(abs(v - middle) for v in values)


def _times(row: JobRow) -> list[float]:
    return [t for t in (row.times_s or [row.measured_s]) if t and t > 0]


def fastest(times: list[float]) -> list[float]:
    """The executions of a disturbed job within DISTURBED_SPREAD of its fastest: a disturbance
    only adds time (Python's timeit reads its fastest run for the same reason). Where the next run
    of the same workload measured it, a disturbed job's fastest execution was a factor of 1.09
    from that (median of 47 disturbed jobs on the 2-core VM), its median 1.51; docs/benchmarks.md 2.18."""
    floor = min(times)
    return [t for t in times if t <= (1 + DISTURBED_SPREAD) * floor]


def learnt_time(row: JobRow) -> float:
    """The time the fit tier learns from a recorded job: its measured time (the median of its
    executions), or, where it was disturbed while it ran, the median of its `fastest` ones."""
    if learnable(row):
        return row.measured_s
    return statistics.median(fastest(_times(row)))


@dataclass
class _Pool:
    params: dict[str, Any]
    threads: int | None
    steady: list[float] = field(default_factory=list)   # executions of jobs not disturbed
    fast: list[float] = field(default_factory=list)     # the fastest of disturbed jobs'
    left: int = 0                                       # disturbed jobs' other executions


def history_from(rows: list[JobRow]) -> list[Measured]:
    """The history tier from recorded ok jobs: per (op, placement, dtype, data, parameters), every
    timed execution of the jobs not disturbed while they ran (`learnable`), those more than
    OUTLIER_MADS from the median dropped, the median of the rest; where at least
    MIN_HISTORY_SAMPLES remain. Where fewer do, disturbed jobs at that size add their `fastest`
    executions, and MIN_HISTORY_SAMPLES counts every execution timed there: a job already run at
    a size answers from history, whatever its run went through."""
    pooled: dict[tuple[str, ...], _Pool] = {}
    for row in filter(recorded, rows):
        dtype, data, threads = row.dtype or "float32", row.data or "host", _threads(row)
        key = history_key(row.op, row.placement, dtype, data, row.params, threads)
        pool = pooled.setdefault(key, _Pool(row.params, threads))
        times = _times(row)
        if learnable(row):
            pool.steady.extend(times)
        else:
            quick = fastest(times)
            pool.fast.extend(quick)
            pool.left += len(times) - len(quick)
    found = []
    for (op, placement, dtype, data, _, _), pool in pooled.items():
        kept, centre, spread = robust_centre(pool.steady)
        dropped = len(pool.steady) - len(kept)
        if len(kept) < MIN_HISTORY_SAMPLES:
            if not pool.fast:
                continue
            values = pool.steady + pool.fast
            kept, centre, spread = robust_centre(values)
            dropped = len(values) - len(kept) + pool.left
            if len(kept) + dropped < MIN_HISTORY_SAMPLES:
                continue
        found.append(Measured(op=op, placement=placement, dtype=dtype, data=data, params=pool.params,
                              centre_s=centre, samples=len(kept), dropped=dropped,
                              spread=round(spread, 4), threads=pool.threads))
    return found


def _threads(row: JobRow) -> int | None:
    """The threads a recorded job ran on, on one CPU (None on a GPU or across nodes)."""
    threads = row.detail.get("threads") if row.placement == "cpu" else None
    return threads if isinstance(threads, int) and threads > 0 else None


class _Predicted(Protocol):
    basis: str
    predicted_s: float


P = TypeVar("P", bound=_Predicted)

# A job recorded on one thread count tries the other where its history is this much longer than
# the other's prediction: noise is 5-15% at the median job and a tiny job's overheads can read 1.6x
# on either count; qr, svd and lstsq of m 2000-3000, n <= 250 ran 1.5-6x slower on both cores
# than on one at 4-40 ms, where the references' shapes run as fast on both (benchmarks.md 2.16).
EXPLORE_RATIO, EXPLORE_MIN_S = 1.4, 2e-3


def by_history(chosen: P, other: P) -> P:
    """Of a job's predictions on its two thread counts (cost/model.py, `predict`): the faster
    where both are recorded; else the recorded one, unless its history is EXPLORE_RATIO and
    EXPLORE_MIN_S longer than the other's prediction."""
    if chosen.basis == other.basis == "history":
        return min(chosen, other, key=lambda p: p.predicted_s)
    recorded, untried = (chosen, other) if chosen.basis == "history" else (other, chosen)
    explore = (recorded.predicted_s >= EXPLORE_RATIO * untried.predicted_s
               and recorded.predicted_s - untried.predicted_s >= EXPLORE_MIN_S)
    return untried if explore else recorded


def robust_centre(values: list[float]) -> tuple[list[float], float, float]:
    """(the values kept, their median, their MAD / median): of OUTLIER_MIN_SAMPLES values or
    more, those more than OUTLIER_MADS normal-scaled median absolute deviations from the median
    are dropped."""
    if not values:
        return [], math.nan, math.nan
    middle, mad = _deviation(values)
    mad *= NORMAL_MAD
    if len(values) < OUTLIER_MIN_SAMPLES or mad == 0:  # of 3, the MAD is the nearer one's distance:
        kept = list(values)                            # it would drop the other almost always
    else:
        kept = [v for v in values if abs(v - middle) <= OUTLIER_MADS * mad]
    centre, deviation = _deviation(kept)
    return kept, centre, deviation / centre


__all__ = ["MIN_HISTORY_SAMPLES", "Measured", "by_history", "fastest", "history_from", "history_key", "learnable",
           "learnt_time", "recorded", "robust_centre"]
