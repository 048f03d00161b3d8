"""Learning from recorded runs: re-predict each recorded job on the profile's hardware without
calibration (the model), fit the factors (`calibration.fit`) and save them. Above both the model
and the factors, so neither imports the other back."""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.cost.calibration import Calibration, Sample, fit, save, summary_errors
from orchestrator.cost.history import history_from, learnable, learnt_time, recorded
from orchestrator.cost.model import Hardware, predict
from orchestrator.ops import get as get_op
from orchestrator.placement import Placement
from orchestrator.results import noise
from orchestrator.results.rows import JobRow
from orchestrator.units import utc_now
from orchestrator.workload.model import Job


SPEED_LIMITS = (1 / 3, 3.0)  # a probe further off than this is not believed
# ... nor one nearer than this: the sentinel reads its own 20% from the profile's nominal on a
# quiet machine (the training runs of held-out benchmarks here: 0.79-1.20; its 4 MiB copy alone
# 0.14-0.21 ms from one quick profile to the next). At 1.25, a quiet training run read 0.795 and
# had every time learnt 26% long (its held-out median error 17.7% against 12.5% uncalibrated;
# 9.6% at 1.5), and four of 33 replays moved by 1.5-3 points. A disturbed job reads 2-60x.
SPEED_UNSEEN = 1.5


def nominal_speeds(rows: list[JobRow], hw: Hardware) -> dict[str, tuple[float, float]]:
    """Device kind -> (GEMM s, copy s) that recorded times are normalised to: the profile's own
    probe (so one wholly disturbed run is caught), else the median of the probes recorded with
    these rows (reference profiles have none)."""
    found: dict[str, tuple[float, float]] = {}
    for kind, device in (("cpu", hw.node.cpu), ("gpu", hw.gpus[0] if hw.gpus else None)):
        if device is not None and device.sentinel is not None:
            found[kind] = (device.sentinel.gemm_s, device.sentinel.copy_s)
            continue
        probes = [p for row in rows for p in _probes(row) if p.get("device") == kind]
        if probes:
            found[kind] = (statistics.median(p["gemm_s"] for p in probes), statistics.median(p["copy_s"] for p in probes))
    return found


def _probes(row: JobRow) -> list[dict[str, Any]]:
    return noise.valid(row.sentinel)


def slowdown(row: JobRow, nominal: dict[str, tuple[float, float]]) -> float:
    """How much slower than nominal the device ran this job: the geometric mean of its probes'
    GEMM and copy ratios (1 where it has none, or where it is within SPEED_UNSEEN of 1), within
    SPEED_LIMITS."""
    ratios = [math.sqrt(p["gemm_s"] / nominal[p["device"]][0] * p["copy_s"] / nominal[p["device"]][1])
              for p in _probes(row) if p.get("device") in nominal]
    mean = statistics.fmean(ratios) if ratios else 1.0
    if 1 / SPEED_UNSEEN < mean < SPEED_UNSEEN:
        return 1.0
    return min(max(mean, SPEED_LIMITS[0]), SPEED_LIMITS[1])


def normalised(rows: list[JobRow], hw: Hardware) -> list[JobRow]:
    """The rows with each time divided by the slowdown its sentinel measured: what it would have
    taken at the profile's speed, so one disturbed run cannot drag what is learnt."""
    nominal = nominal_speeds(rows, hw)
    found = []
    for row in rows:
        factor = slowdown(row, nominal)
        found.append(row if factor == 1.0 else dataclasses.replace(
            row, measured_s=row.measured_s / factor if row.measured_s else row.measured_s,
            times_s=[t / factor for t in row.times_s or []]))
    return found


def samples_from(rows: list[JobRow], hw: Hardware) -> list[Sample]:
    """Recorded ok jobs re-predicted on `hw` without calibration: those not disturbed while they
    ran (`learnable`), and, for an (op, device, dtype) that has none, its disturbed ones at the
    median of their fastest executions (`learnt_time`), so an op seen only in a disturbed run is
    still fitted at other sizes; where the group has a steady job, a disturbed one teaches it
    nothing (one disturbed batched_matmul had taught its group 3x)."""
    found: list[tuple[Sample, bool]] = []
    for row in filter(recorded, rows):
        try:
            op = get_op(row.op)
        except (KeyError, ValueError):  # a user op no longer installed here: nothing to learn from it
            continue
        placement = Placement.parse(row.placement)
        job = Job(name=row.name, op=row.op, params=row.params, dtype=row.dtype or "float32",
                  data=row.data or "host")
        raw = predict(job, placement, hw, calibrated=False, threads=(row.detail or {}).get("threads"))
        if not raw.feasible:
            continue
        t = raw.terms
        sample = Sample(op=row.op, device=placement.device, dtype=job.dtype, overhead_s=t["overhead_s"],
                        work_s=max(t["compute_s"], t["memory_s"]), fixed_s=t["transfer_s"] + t["communication_s"],
                        measured_s=learnt_time(row), flops=max(op.flops(row.params), 1.0),
                        dispatch_s=t["dispatch_s"], penalty=raw.penalty, run=row.run_id)
        found.append((sample, learnable(row)))
    taught = {(s.op, s.device, s.dtype) for s, steady in found if steady}
    return [s for s, steady in found if steady or (s.op, s.device, s.dtype) not in taught]


@dataclass
class Refit:
    calibration: Calibration
    before: dict[str, float]
    after: dict[str, float]
    path: Path


def refit(profile: str, hw: Hardware, store: Any) -> Refit | None:
    """Fit `profile`'s factors to the recorded ok jobs of its runs and save them; None when
    there is nothing to learn from. `hw` is the profile's hardware without calibration."""
    rows, runs = store.jobs_for_profile(profile)
    rows = normalised(rows, hw)
    samples = samples_from(rows, hw)
    if not samples:
        return None
    fitted = utc_now()
    calibration = fit(profile, samples, runs, fitted, history_from(rows))
    path = save(calibration)
    return Refit(calibration, summary_errors(samples, None), summary_errors(samples, calibration), path)


def refit_recorded(hw: Hardware) -> Refit | None:
    """`refit` of `hw`'s profile from the result store in $ORCH_HOME, opened for it."""
    from orchestrator.results.store import ResultStore

    store = ResultStore()
    try:
        return refit(hw.name, hw, store)
    finally:
        store.close()
