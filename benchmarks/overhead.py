"""orch's own overhead, whole process against whole process: `orch run` of a workload against
the same jobs submitted one task each by a hand-written Dask script (`hand_dask.py`: a bare
`LocalCluster` on loopback, 1 worker with 2 threads, orch's kernels), both as fresh Python
processes, interleaved, with medians and the spread between rounds.

    .venv/bin/python benchmarks/overhead.py                  # 200 small jobs, 3 rounds
    .venv/bin/python benchmarks/overhead.py --tiny 10000     # 10,000 tiny jobs
    .venv/bin/python benchmarks/overhead.py --scaling 100,1000,10000 --rounds 1

Small jobs: 128^3 matmuls, 1 warm-up + 3 timed executions. Tiny jobs: half dots of 1K-100K
elements, half matmuls of 16-65 x 32 x 32, 1 warm-up + 1 timed (issue 16's batches). orch runs
with a fresh ORCH_HOME, this machine's quick profile (measured once, first) and --no-learn.
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

import yaml

ROOT = Path(__file__).resolve().parent.parent
HAND = Path(__file__).resolve().parent / "hand_dask.py"


def small_jobs(count: int) -> list[dict]:
    return [{"name": f"m{i}", "op": "matmul", "m": 128, "n": 128, "k": 128, "seed": i, "repeats": 3, "warmup": 1}
            for i in range(count)]


def tiny_jobs(count: int) -> list[dict]:
    jobs = []
    for i in range(count):
        if i % 2:
            jobs.append({"name": f"mm{i}", "op": "matmul", "m": 16 + (i // 2) % 50, "n": 32, "k": 32, "seed": i})
        else:
            jobs.append({"name": f"d{i}", "op": "dot", "n": 1000 * (1 + (i // 2 * 37) % 100), "seed": i})
    return [{**job, "repeats": 1, "warmup": 1} for job in jobs]


def write(folder: Path, name: str, jobs: list[dict]) -> tuple[Path, Path]:
    """The workload for orch, and the same jobs as the harness's tasks for the hand script."""
    workload = folder / f"{name}.yaml"
    workload.write_text(yaml.safe_dump({"version": 1, "name": name, "jobs": jobs}, sort_keys=False))
    sizes = {"matmul": ("m", "n", "k"), "dot": ("n",)}
    tasks = [{"name": job["name"], "op": job["op"], "params": {p: job[p] for p in sizes[job["op"]]},
              "repeats": job["repeats"], "warmup": job["warmup"], "seed": job["seed"], "threads": os.cpu_count()}
             for job in jobs]  # the fields of orchestrator.execute.task.Task (placement: cpu, data: host)
    listing = folder / f"{name}.tasks.json"
    listing.write_text(json.dumps(tasks))
    return workload, listing


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


def orch_run(workload: Path, profile: Path, env: dict[str, str]) -> float:
    return timed([sys.executable, "-m", "orchestrator", "run", str(workload), "--profile", str(profile),
                  "--no-learn", "--format", "json"], env)


def hand_run(listing: Path, env: dict[str, str]) -> float:
    return timed([sys.executable, str(HAND), str(listing)], env)


def compare(name: str, jobs: list[dict], rounds: int, folder: Path, profile: Path, env: dict[str, str]) -> None:
    workload, listing = write(folder, name, jobs)
    orch, hand = [], []
    for round_ in range(rounds):  # interleaved, alternating which goes first
        pair = [("orch", lambda: orch_run(workload, profile, env)), ("hand", lambda: hand_run(listing, env))]
        for label, run in pair if round_ % 2 == 0 else pair[::-1]:
            (orch if label == "orch" else hand).append(run())
        print(f"  round {round_ + 1}: orch {orch[-1]:.2f} s, hand {hand[-1]:.2f} s, ratio {orch[-1] / hand[-1]:.2f}",
              flush=True)
    print(f"{name}: {len(jobs)} jobs, {rounds} rounds; whole-process wall time, median (min-max)")
    print(f"  orch run   {statistics.median(orch):7.2f} s  ({min(orch):.2f}-{max(orch):.2f})  "
          f"{statistics.median(orch) / len(jobs) * 1e3:.2f} ms a job")
    print(f"  by hand    {statistics.median(hand):7.2f} s  ({min(hand):.2f}-{max(hand):.2f})  "
          f"{statistics.median(hand) / len(jobs) * 1e3:.2f} ms a job")
    print(f"  ratio of medians {statistics.median(orch) / statistics.median(hand):.2f}; per-round ratios "
          f"{', '.join(f'{o / h:.2f}' for o, h in zip(orch, hand))}")


def scaling(counts: list[int], rounds: int, folder: Path, profile: Path, env: dict[str, str], hand: bool) -> None:
    rows = []
    for count in counts:
        workload, listing = write(folder, f"tiny-{count}", tiny_jobs(count))
        walls = [orch_run(workload, profile, env) for _ in range(rounds)]
        hands = [hand_run(listing, env) for _ in range(rounds)] if hand else []
        rows.append((count, statistics.median(walls), statistics.median(hands) if hands else None))
        print(f"  {count} jobs: orch {rows[-1][1]:.2f} s" + (f", hand {rows[-1][2]:.2f} s" if hands else ""), flush=True)
    print("jobs    orch wall  per job   " + ("by hand    per job   ratio" if hand else ""))
    for count, wall, by_hand in rows:
        line = f"{count:<7} {wall:8.2f} s  {wall / count * 1e3:6.2f} ms"
        if by_hand is not None:
            line += f"  {by_hand:8.2f} s  {by_hand / count * 1e3:6.2f} ms  {wall / by_hand:5.2f}"
        print(line)
    if len(rows) > 1:
        first, last = rows[-2], rows[-1]
        print(f"per-job cost at {last[0]} / at {first[0]}: {(last[1] / last[0]) / (first[1] / first[0]):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=200, help="small jobs (128^3 matmuls) to compare")
    parser.add_argument("--tiny", type=int, default=0, help="also compare this many tiny jobs")
    parser.add_argument("--scaling", default="", help="comma-separated job counts: orch's per-job cost curve")
    parser.add_argument("--scaling-hand", action="store_true", help="time the hand script on the curve too")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="a profile instead of this machine's quick profile")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="orch-overhead-"))
    env = {**os.environ, "ORCH_HOME": str(folder / "home"), "PYTHONPATH": str(ROOT)}
    profile = Path(args.profile) if args.profile else folder / "this-machine.yaml"
    if not args.profile:
        subprocess.run([sys.executable, "-m", "orchestrator", "profile", "--quick", "--output", str(profile),
                        "--format", "json"], env=env, check=True, capture_output=True, cwd=ROOT)
    print(f"{os.cpu_count()} CPUs; ORCH_HOME {folder / 'home'}")
    if args.small:
        compare("small", small_jobs(args.small), args.rounds, folder, profile, env)
    if args.tiny:
        compare("tiny", tiny_jobs(args.tiny), args.rounds, folder, profile, env)
    if args.scaling:
        scaling([int(c) for c in args.scaling.split(",")], args.rounds, folder, profile, env, args.scaling_hand)


if __name__ == "__main__":
    main()
