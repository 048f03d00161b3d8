"""Do orch's own measurements repeat? Two back-to-back runs of one workload, with its own
`repeats` and with `repeats: auto`, interleaved (fixed, auto, fixed, auto).

    .venv/bin/python benchmarks/repeatability.py [--profile PATH] [--workload W.yaml] [--rounds 1]

For each pair of runs: per job |first - second| / second; prints the median and p90 over the
jobs, and each run's wall time and the noise it reported (the sentinel's spread). Issue 13 asks
10% at the median job and 25% at the p90 with `repeats: auto`. Everything runs under a
temporary ORCH_HOME with --no-learn.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent


def orch(*args: str, env: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, env=env,
                            cwd=ROOT)
    if result.returncode not in (0, 1):
        raise SystemExit(f"orch {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}


def with_repeats(path: Path, repeats: object, folder: Path) -> Path:
    data = yaml.safe_load(path.read_text())
    data.setdefault("defaults", {})["repeats"] = repeats
    for job in data["jobs"]:
        job.pop("repeats", None)
    out = folder / f"{path.stem}-{repeats}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def differences(first: dict, second: dict) -> list[float]:
    b = {j["name"]: j["measured_s"] for j in second["jobs"] if j["status"] == "ok"}
    return [abs(j["measured_s"] - b[j["name"]]) / b[j["name"]] for j in first["jobs"]
            if j["status"] == "ok" and j["name"] in b]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--workload", type=Path, default=ROOT / "workloads/calibration-heldout.yaml")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-repeat-") as home:
        env = {**os.environ, "ORCH_HOME": home}
        profile = args.profile or Path(home) / "this-machine.yaml"
        if not args.profile:
            orch("profile", "--quick", "--output", str(profile), "--format", "json", env=env)
        kinds = {"fixed": args.workload, "auto": with_repeats(args.workload, "auto", Path(home))}
        runs: dict[str, list[tuple[dict, float]]] = {kind: [] for kind in kinds}
        for _ in range(2 * args.rounds):
            for kind, path in kinds.items():
                started = time.perf_counter()
                report = orch("run", str(path), "--profile", str(profile), "--no-learn", "--format", "json", env=env)
                runs[kind].append((report, time.perf_counter() - started))
    for kind, done in runs.items():
        for i in range(0, len(done), 2):
            (a, wall_a), (b, wall_b) = done[i], done[i + 1]
            diff = differences(a, b)
            noise = [r.get("noise", {}).get("cpu", {}).get("spread") for r in (a, b)]
            print(f"{kind:5}  jobs {len(diff):3}  median {statistics.median(diff):6.1%}  "
                  f"p90 {np.percentile(diff, 90):6.1%}  wall {wall_a:5.1f} s, {wall_b:5.1f} s  "
                  f"sentinel spread {noise[0]}, {noise[1]}")


if __name__ == "__main__":
    main()
