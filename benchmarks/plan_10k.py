"""How long `orch plan` takes for a 10,000-job workload made of sweeps (goal: under 5 s).

    .venv/bin/python benchmarks/plan_10k.py [--profile h100-sxm-8]

Prints the time to load and expand the file, to plan, to render JSON, and the whole CLI call.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.plan import render  # noqa: E402
from orchestrator.plan.hardware import hardware_for  # noqa: E402
from orchestrator.plan.planner import make_plan  # noqa: E402
from orchestrator.profile import store  # noqa: E402
from orchestrator.workload.loader import load  # noqa: E402


def workload() -> dict:
    sizes = [64 * (i + 1) for i in range(50)]
    return {"version": 1, "name": "sweep-10k", "jobs": [
        {"name": "gemm", "op": "matmul", "m": 64, "n": 64, "k": 512,
         "sweep": {"m": sizes, "n": sizes, "dtype": ["float32", "bfloat16"]}},   # 5,000 jobs
        {"name": "dot", "op": "dot", "n": 1000,
         "sweep": {"n": [1000 * (i + 1) for i in range(2500)], "data": ["host", "device"]}},  # 5,000 jobs
    ]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="h100-sxm-8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep-10k.yaml"
        path.write_text(yaml.safe_dump(workload()))
        t0 = time.perf_counter()
        loaded = load(path)
        t1 = time.perf_counter()
        plan = make_plan(loaded, hardware_for(store.resolve(args.profile)))
        t2 = time.perf_counter()
        render.as_json(plan)
        t3 = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "orchestrator", "plan", str(path), "--profile", args.profile,
                              "--format", "json"], capture_output=True, text=True)
        t4 = time.perf_counter()
        assert cli.returncode == 0, cli.stderr
    print(f"jobs: {len(loaded.jobs)}  profile: {args.profile}")
    print(f"load+validate+expand: {t1 - t0:.2f} s")
    print(f"plan (predict every candidate, schedule): {t2 - t1:.2f} s")
    print(f"render json: {t3 - t2:.2f} s")
    print(f"whole `orch plan --format json` command: {t4 - t3:.2f} s  (goal < 5 s)")


if __name__ == "__main__":
    main()
