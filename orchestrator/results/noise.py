"""A run's own noise: the spread of the sentinel probes its jobs recorded (execute/sentinel.py)."""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

from orchestrator.results.rows import JobRow


def valid(probes: Any) -> list[dict[str, Any]]:
    """The well-formed probes among what a row or a run recorded."""
    return [p for p in probes or [] if isinstance(p, dict) and p.get("gemm_s", 0) > 0 and p.get("copy_s", 0) > 0]


def probes_of(rows: list[JobRow], end: list[dict[str, Any]] | str | None = None) -> list[dict[str, Any]]:
    """Every distinct probe the rows carry (jobs that ran in one probe's window share it), and
    those taken at the run's end (`end`, or the store's JSON of them)."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    extra = json.loads(end) if isinstance(end, str) else (end or [])
    for probes in [*(row.sentinel for row in rows), extra]:
        for probe in valid(probes):
            seen.setdefault((probe.get("device"), probe.get("at"), probe["gemm_s"]), probe)
    return list(seen.values())


def noise_of(rows: list[JobRow], end: list[dict[str, Any]] | str | None = None) -> dict[str, dict[str, float]]:
    """Per device kind: how many probes, their median GEMM and copy times, and the spread of the
    machine's speed over the run ((slowest - fastest) / median of sqrt(GEMM x copy))."""
    found: dict[str, dict[str, float]] = {}
    probes = probes_of(rows, end)
    for kind in sorted({p.get("device") or "cpu" for p in probes}):
        mine = [p for p in probes if (p.get("device") or "cpu") == kind]
        speed = [math.sqrt(p["gemm_s"] * p["copy_s"]) for p in mine]
        middle = statistics.median(speed)
        found[kind] = {"probes": len(mine), "gemm_s": statistics.median(p["gemm_s"] for p in mine),
                       "copy_s": statistics.median(p["copy_s"] for p in mine),
                       "spread": round((max(speed) - min(speed)) / middle, 4),
                       "slowest_x": round(max(speed) / min(speed), 3)}
    return found


# A run whose sentinel ran this many times slower at one moment than at another was disturbed
# beyond what dividing by its probes corrects (cost/refit.py believes a probe up to 3x): on this
# VM a test suite beside a training run made its jobs 10-40x slow while the probes at their start
# read normal, and learning from it priced axpy 4x and train_mlp 3x slow (docs/benchmarks.md).
UNSTEADY_X = 3.0


def unsteady(noise: dict[str, dict[str, float]]) -> dict[str, float]:
    """Device kind -> how many times slower its slowest probe ran than its fastest, where that
    is UNSTEADY_X or more."""
    return {kind: found["slowest_x"] for kind, found in noise.items() if found["slowest_x"] >= UNSTEADY_X}
