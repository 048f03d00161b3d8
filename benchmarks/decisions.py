"""Decision quality: every job measured on every placement this machine can run; the regret of
orch's choice (its time / the best measured time) against fixed strategies.

    .venv/bin/python benchmarks/decisions.py [--workload W.yaml] [--profile P]

Strategies: orch's plan; "always cpu"; "always gpu" (where a GPU exists); the backend's default,
which for a plain Dask or Ray task is the CPU code path (a task runs wherever the scheduler puts
it and uses the GPU only if the code asks for one). One `orch run --placement P --no-learn`
per placement, over the jobs that placement can run (a plain Python loop has no GPU placement);
everything under a temporary ORCH_HOME. Prints median, p95 and max regret.

`--batch R` then runs the whole workload as one batch per strategy, R rounds interleaved
(orch, all cpu, all gpu, each job at its own measured best; the order rotates each round), and
prints each strategy's median makespan (`elapsed_s` of `orch run`: first submission to last
result) against the best, beside the run-to-run spread of each. A batch is what orch plans
for: CPU and GPU jobs at once, one job per device at a time.
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
    parser.add_argument("--batch", type=int, default=0, metavar="R",
                        help="then run the whole workload as a batch per strategy, R interleaved rounds")
    args = parser.parse_args()
    keep = tempfile.TemporaryDirectory(prefix="orch-decisions-")  # until the batches are done too
    home = keep.name
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
    if args.batch:
        batches(args.workload, profile, strategies, measured, args.batch, env)
    keep.cleanup()


def batches(workload: Path, profile: str, strategies: dict[str, dict[str, str]], measured: dict[str, dict[str, float]],
            rounds: int, env: dict[str, str]) -> None:
    """Each strategy's whole batch, `rounds` times, interleaved; median makespans."""
    loaded = load(workload)
    best = {job: min(times, key=times.get) for job, times in measured.items()}
    chosen = {"orch plan": None, "all cpu": strategies["always cpu"], "each at its best": best}
    if "always gpu" in strategies:
        chosen["all gpu"] = {job: place if job in measured and place in measured[job] else "cpu"
                             for job, place in strategies["always gpu"].items()}
    files = {}
    for name, placements in chosen.items():
        jobs = []
        for i, job in enumerate(loaded.jobs):  # expanded sweeps: a name of their own each
            entry = {"name": f"j{i}", "op": job.op, **job.params, "dtype": job.dtype, "repeats": job.repeats,
                     "warmup": job.warmup, "data": job.data, "seed": job.seed}
            if placements is not None:
                entry["placement"] = placements.get(job.name, "cpu")
            jobs.append(entry)
        files[name] = Path(env["ORCH_HOME"]) / f"batch-{len(files)}.yaml"
        files[name].write_text(yaml.safe_dump({"version": 1, "name": f"{loaded.name}-{name.replace(' ', '-')}", "jobs": jobs},
                                               sort_keys=False))
    elapsed: dict[str, list[float]] = {name: [] for name in chosen}
    planned: list[float] = []
    names = list(chosen)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            run = orch("run", str(files[name]), "--profile", profile, "--no-learn", env=env)
            if any(job["status"] != "ok" for job in run["jobs"]):
                print(f"  {name}, round {r + 1}: a job failed; its makespan is left out")
                continue
            elapsed[name].append(run["elapsed_s"])
            if name == "orch plan" and run.get("planned_makespan_s"):
                planned.append(run["planned_makespan_s"])
    medians = {name: float(np.median(times)) for name, times in elapsed.items() if times}
    fastest = min(medians.values())
    print()
    print(f"Batches: {len(loaded.jobs)} jobs, {rounds} interleaved rounds (makespan = first submission to last result)")
    print("| strategy | median makespan | vs the fastest | spread over rounds (max/min - 1) |")
    print("| --- | --- | --- | --- |")
    for name, median in medians.items():
        times = elapsed[name]
        print(f"| {name} | {median:.3g} s | {median / fastest:.2f} | {max(times) / min(times) - 1:.0%} |")
    if planned:
        print(f"orch's plan predicted a makespan of {np.median(planned):.3g} s (median over rounds)")


if __name__ == "__main__":
    main()
