"""Decision quality: every job measured on every placement this machine can run; the regret of
orch's choice (its time / the best measured time) against fixed strategies.

    .venv/bin/python benchmarks/decisions.py [--workload W.yaml] [--profile P]

Strategies: orch's plan; "always cpu"; "always gpu" (where a GPU exists); the backend's default,
which for a plain Dask or Ray task is the CPU code path (a task runs wherever the scheduler puts
it and uses the GPU only if the code asks for one). One `orch run --placement P --no-learn`
per placement, over the jobs that placement can run (a plain Python loop has no GPU placement);
everything under a temporary ORCH_HOME. Prints median, p95 and max regret.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.workload.loader import load  # noqa: E402


def orch(*args: str, env: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-m", "orchestrator", *args, "--format", "json"], capture_output=True,
                            text=True, env=env, cwd=ROOT)
    if result.returncode not in (0, 1):
        raise SystemExit(f"orch {' '.join(args)}: exit {result.returncode}: {result.stderr}")
    return json.loads(result.stdout)


def jobs_for(workload: Path, names: set[str], out: Path) -> tuple[Path, dict[str, str]]:
    """The workload's jobs named in `names`, sweeps expanded, one explicit job each (same seeds),
    and each written job's name -> its name in the workload."""
    loaded = load(workload)
    jobs = [{"name": f"j{i}", "op": job.op, **job.params, "dtype": job.dtype, "repeats": job.repeats,
             "warmup": job.warmup, "data": job.data, "seed": job.seed}
            for i, job in enumerate(loaded.jobs) if job.name in names]
    out.write_text(yaml.safe_dump({"version": 1, "name": loaded.name, "jobs": jobs}, sort_keys=False))
    return out, {f"j{i}": job.name for i, job in enumerate(loaded.jobs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, default=ROOT / "workloads/demo.yaml")
    parser.add_argument("--profile", help="default: a quick profile of this machine")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-decisions-") as home:
        env = {**os.environ, "ORCH_HOME": home}
        profile = args.profile or str(Path(home) / "this-machine.yaml")
        if not args.profile:
            orch("profile", "--quick", "--output", profile, env=env)
        plan = orch("plan", str(args.workload), "--profile", profile, env=env)
        placements = sorted({c["placement"] for job in plan["jobs"] for c in job["candidates"]
                             if c["feasible"] and "@" not in c["placement"]})
        measured: dict[str, dict[str, float]] = {}
        for placement in placements:
            runnable = {job["name"] for job in plan["jobs"]
                        if any(c["placement"] == placement and c["feasible"] for c in job["candidates"])}
            subset, names = jobs_for(args.workload, runnable, Path(home) / f"{placement.replace(':', '-')}.yaml")
            run = orch("run", str(subset), "--profile", profile, "--placement", placement, "--no-learn", env=env)
            for job in run["jobs"]:
                if job["status"] == "ok":
                    measured.setdefault(names[job["name"]], {})[placement] = job["measured_s"]
    strategies = {"orch plan": {job["name"]: job["placement"] for job in plan["jobs"]},
                  "always cpu": {job["name"]: "cpu" for job in plan["jobs"]},
                  "backend default (cpu code path)": {job["name"]: "cpu" for job in plan["jobs"]}}
    if "gpu" in placements:
        strategies["always gpu"] = {job["name"]: "gpu" for job in plan["jobs"]}
    print(f"{len(measured)} jobs of {args.workload.name}, placements measured: {', '.join(placements)}")
    print("| strategy | jobs | median regret | p95 regret | max regret |")
    print("| --- | --- | --- | --- | --- |")
    for name, choice in strategies.items():
        regrets = [times[choice[job]] / min(times.values()) for job, times in measured.items() if choice[job] in times]
        if regrets:
            print(f"| {name} | {len(regrets)} | {np.median(regrets):.2f} | {np.percentile(regrets, 95):.2f} | "
                  f"{max(regrets):.2f} |")
    print()
    print("| job | " + " | ".join(placements) + " | orch chose | its regret |")
    print("|" + " --- |" * (len(placements) + 3))
    chosen = strategies["orch plan"]
    for job, times in measured.items():
        cells = [f"{times[p] * 1e3:.3g} ms" if p in times else "-" for p in placements]
        regret = f"{times[chosen[job]] / min(times.values()):.2f}" if chosen[job] in times else "-"
        print(f"| {job} | " + " | ".join(cells) + f" | {chosen[job]} | {regret} |")


if __name__ == "__main__":
    main()
