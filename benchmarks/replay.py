"""Replay recorded measurements against the model: how a profile (or a model change) would have
predicted jobs already measured, without running them again.

    .venv/bin/python benchmarks/replay.py --profile P --measured accuracy.json [--placement gpu]
                                          [--heldout W.yaml] [--without-float64-references]
                                          [--learn HOME]

`--measured` is what `benchmarks/accuracy.py --json` wrote (each held-out job's measured time);
every such job of the held-out workload is predicted on `--placement` (default: cpu) with the
profile, uncalibrated, and compared with its measurement: the median and 90th percentile of
|predicted - measured| / measured, per dtype and overall, and per job with `--jobs`. A GPU
machine is lent for minutes: its measurements, replayed here, test a model change at no device
time (docs/benchmarks.md, section 5.6). `--without-float64-references` drops the profile's
float64 op references first (the same profile, with and without them: section 2.7).
`--learn HOME` (an ORCH_HOME `accuracy.py --keep` kept) fits the calibration again, with this
code, from the training run recorded there (a copy of it), and adds the calibrated error: a
change to how orch learns, tried on measurements already made.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.cost.model import Hardware, predict  # noqa: E402
from orchestrator.cost.refit import refit_recorded  # noqa: E402
from orchestrator.placement import Placement  # noqa: E402
from orchestrator.plan.hardware import hardware_for  # noqa: E402
from orchestrator.profile.store import resolve  # noqa: E402
from orchestrator.workload.loader import load  # noqa: E402


def without_float64(profile: Path, out: Path) -> Path:
    data = yaml.safe_load(profile.read_text())
    for device in [data.get("cpu") or {}, *(data.get("gpus") or [])]:
        for op, benches in (device.get("op_benchmarks") or {}).items():
            device["op_benchmarks"][op] = [b for b in benches if b.get("dtype", "float32") != "float64"]
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, required=True)
    parser.add_argument("--measured", type=Path, required=True, help="accuracy.py --json output")
    parser.add_argument("--heldout", type=Path, default=ROOT / "workloads/calibration-heldout.yaml")
    parser.add_argument("--placement", default="cpu")
    parser.add_argument("--without-float64-references", action="store_true")
    parser.add_argument("--jobs", action="store_true", help="print every job's predicted / measured")
    parser.add_argument("--learn", type=Path, help="refit from the training run kept in this ORCH_HOME")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-replay-") as scratch:
        profile = without_float64(args.profile, Path(scratch) / "p.yaml") if args.without_float64_references else args.profile
        hw = hardware_for(resolve(str(profile)), calibrated=False)
        learnt = relearnt(hw, args.learn, Path(scratch) / "home") if args.learn else None
    jobs = {job.name: job for job in load(args.heldout).jobs}
    placement = Placement.parse(args.placement)
    rows = []
    for measured in json.loads(args.measured.read_text())["heldout"]:
        job, threads = jobs[measured["name"]], measured.get("threads")  # as it ran (one thread or all)
        got = predict(job, placement, hw, calibrated=False, threads=threads)
        calibrated = predict(job, placement, learnt, threads=threads) if learnt else got
        rows.append((measured["name"], measured["dtype"], got.predicted_s / measured["measured_s"],
                     calibrated.predicted_s / measured["measured_s"]))
        if args.jobs:
            print(f"  {measured['name']:36} predicted / measured {rows[-1][2]:5.2f}  {got.bound}"
                  + (f"  calibrated {rows[-1][3]:5.2f} ({calibrated.basis})" if learnt else ""))
    for dtype in sorted({r[1] for r in rows}) + ["all"]:
        errors = [abs(r[2] - 1) for r in rows if dtype in ("all", r[1])]
        learnt_errors = [abs(r[3] - 1) for r in rows if dtype in ("all", r[1])]
        print(f"{dtype:9} {len(errors):3} jobs: uncalibrated median {statistics.median(errors):6.1%}  "
              f"p90 {np.percentile(errors, 90):6.1%}"
              + (f"   calibrated median {statistics.median(learnt_errors):6.1%}  "
                 f"p90 {np.percentile(learnt_errors, 90):6.1%}" if learnt else ""))


def relearnt(hw: Hardware, home: Path, scratch: Path) -> Hardware:
    """`hw` with the calibration this code fits from the runs recorded in a copy of `home`."""
    shutil.copytree(home, scratch, ignore=shutil.ignore_patterns("dask-scratch*", "locks", "calibration"))
    os.environ["ORCH_HOME"] = str(scratch)
    done = refit_recorded(hw)
    if done is None:
        raise SystemExit(f"--learn {home}: no recorded run of profile {hw.name} to learn from")
    return dataclasses.replace(hw, calibration=done.calibration)


if __name__ == "__main__":
    main()
