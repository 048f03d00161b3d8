"""Learning from recorded runs: re-predict each recorded job on the profile's hardware without
calibration (the model), fit the factors (`calibration.fit`) and save them. Above both the model
and the factors, so neither imports the other back."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.cost.calibration import Calibration, Sample, fit, save, summary_errors
from orchestrator.cost.model import Hardware, predict
from orchestrator.ops import get as get_op
from orchestrator.placement import Placement
from orchestrator.workload.model import Job


def samples_from(rows: list[dict[str, Any]], hw: Hardware) -> list[Sample]:
    """Recorded ok jobs re-predicted on `hw` without calibration."""
    found = []
    for row in rows:
        if row["status"] != "ok" or not row["measured_s"] or not row["placement"]:
            continue
        try:
            op = get_op(row["op"])
        except (KeyError, ValueError):  # a user op no longer installed here: nothing to learn from it
            continue
        placement = Placement.parse(row["placement"])
        job = Job(name=row["name"], op=row["op"], params=row["params"], dtype=row["dtype"] or "float32",
                  data=row["data"] or "host")
        raw = predict(job, placement, hw, calibrated=False)
        if not raw.feasible:
            continue
        t = raw.terms
        found.append(Sample(op=row["op"], device=placement.device, dtype=job.dtype, overhead_s=t["overhead_s"],
                            work_s=max(t["compute_s"], t["memory_s"]), fixed_s=t["transfer_s"] + t["communication_s"],
                            measured_s=row["measured_s"], flops=max(op.flops(row["params"]), 1.0),
                            dispatch_s=t["dispatch_s"]))
    return found


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
    samples = samples_from(rows, hw)
    if not samples:
        return None
    fitted = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    calibration = fit(profile, samples, runs, fitted)
    path = save(calibration)
    return Refit(calibration, summary_errors(samples, None), summary_errors(samples, calibration), path)
