"""Cores as capacity: one batch run side by side (orch's default on the embedded cluster: a
one-thread job holds one core, so such jobs run beside each other) against the same batch with
`--exclusive` (each CPU job alone on every core, as orch ran before), R rounds interleaved.

    .venv/bin/python benchmarks/cores.py [--workload W.yaml] [--profile P] [--rounds R]

Prints each way's median makespan (`elapsed_s`: first submission to last result) and planned
makespan, the run-to-run spread, and how much running beside other jobs slowed each job
(median measured time side by side / exclusive, per job). Everything under a temporary ORCH_HOME.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decisions import ROOT, orch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, default=ROOT / "benchmarks/cores-batch.yaml")
    parser.add_argument("--profile", help="default: a quick profile of this machine")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-cores-") as home:
        env = {**os.environ, "ORCH_HOME": home}
        profile = args.profile or str(Path(home) / "this-machine.yaml")
        if not args.profile:
            orch("profile", "--quick", "--output", profile, env=env)
        ways = {"side by side": [], "exclusive": ["--exclusive"]}
        elapsed: dict[str, list[float]] = {way: [] for way in ways}
        planned: dict[str, list[float]] = {way: [] for way in ways}
        measured: dict[str, dict[str, list[float]]] = {way: {} for way in ways}
        threads: dict[str, int | None] = {}
        names = list(ways)
        for r in range(args.rounds):
            for way in names[r % 2:] + names[:r % 2]:
                run = orch("run", str(args.workload), "--profile", profile, "--no-learn", *ways[way], env=env)
                if any(job["status"] != "ok" for job in run["jobs"]):
                    print(f"  {way}, round {r + 1}: a job failed; left out")
                    continue
                elapsed[way].append(run["elapsed_s"])
                planned[way].append(run["planned_makespan_s"])
                for job in run["jobs"]:
                    measured[way].setdefault(job["name"], []).append(job["measured_s"])
                    if way == "side by side":
                        threads[job["name"]] = job.get("threads")
    print(f"{args.workload.name}: {len(threads)} jobs, {args.rounds} interleaved rounds")
    print("| run | median makespan | planned | spread over rounds (max/min - 1) |")
    print("| --- | --- | --- | --- |")
    for way in ways:
        times = elapsed[way]
        print(f"| {way} | {np.median(times):.3g} s | {np.median(planned[way]):.3g} s | "
              f"{max(times) / min(times) - 1:.0%} |")
    ratio = np.median(elapsed["side by side"]) / np.median(elapsed["exclusive"])
    print(f"side by side / exclusive makespan: {ratio:.2f}")
    print()
    print("| job | threads | exclusive | side by side | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, thread_count in threads.items():
        alone, beside = np.median(measured["exclusive"][name]), np.median(measured["side by side"][name])
        print(f"| {name} | {thread_count} | {alone * 1e3:.3g} ms | {beside * 1e3:.3g} ms | {beside / alone:.2f} |")


if __name__ == "__main__":
    main()
