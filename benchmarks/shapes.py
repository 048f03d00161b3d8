"""Tall factorisations read by shape (cost/shapes.py): one batch planned with a profile and with
the same profile less its references across shapes, R rounds interleaved, each run under a fresh
ORCH_HOME and without learning, so the two differ only in what the model saw.

    .venv/bin/python benchmarks/shapes.py [--workload W.yaml] [--profile P] [--rounds R]

Prints, for the jobs whose thread count the shapes changed, each one's median measured time
both ways and the ratio; the sum over them and over the other jobs (whose ratio is the
run-to-run noise); and each way's median and p90 |predicted - measured| / measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decisions import ROOT, orch  # noqa: E402


def without_shapes(profile: Path, out: Path) -> Path:
    """`profile` less its references across shapes (`shape: true`)."""
    data = yaml.safe_load(profile.read_text())
    benches = data["cpu"]["op_benchmarks"]
    for op in benches:
        benches[op] = [bench for bench in benches[op] if not bench.get("shape")]
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, default=ROOT / "benchmarks/tall-batch.yaml")
    parser.add_argument("--profile", type=Path, help="default: a quick profile of this machine")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-shapes-") as scratch:
        env = {**os.environ, "ORCH_HOME": str(Path(scratch) / "profiling")}
        profile = args.profile or Path(scratch) / "this-machine.yaml"
        if not args.profile:
            orch("profile", "--quick", "--output", str(profile), env=env)
        profiles = {"without shapes": without_shapes(profile, Path(scratch) / "without.yaml"), "with shapes": profile}
        runs: dict[str, dict[str, list[dict]]] = {way: {} for way in profiles}
        names = list(profiles)
        for r in range(args.rounds):
            for way in names[r % 2:] + names[:r % 2]:
                home = Path(scratch) / f"{way}-{r}".replace(" ", "-")
                run = orch("run", str(args.workload), "--profile", str(profiles[way]), "--no-learn",
                           env={**os.environ, "ORCH_HOME": str(home)})
                for job in run["jobs"]:
                    if job["status"] == "ok":
                        runs[way].setdefault(job["name"], []).append(job)
    both = [name for name in runs["with shapes"] if name in runs["without shapes"]]
    median = {way: {name: statistics.median(job["measured_s"] for job in runs[way][name]) for name in both}
              for way in profiles}
    threads = {way: {name: runs[way][name][0].get("threads") for name in both} for way in profiles}
    changed = [name for name in both if threads["with shapes"][name] != threads["without shapes"][name]]
    print(f"{args.workload.name}: {len(both)} jobs, {args.rounds} interleaved rounds; "
          f"{len(changed)} on another thread count with the shapes")
    print("| job | threads without / with | measured without / with (ms) | ratio |")
    print("| --- | --- | --- | --- |")
    for name in sorted(changed, key=lambda n: median["with shapes"][n] / median["without shapes"][n]):
        before, after = median["without shapes"][name], median["with shapes"][name]
        print(f"| {name} | {threads['without shapes'][name]} / {threads['with shapes'][name]} | "
              f"{before * 1e3:.1f} / {after * 1e3:.1f} | {after / before:.2f}x |")
    for label, group in (("those jobs", changed), ("the others (noise)", [n for n in both if n not in changed])):
        before = sum(median["without shapes"][n] for n in group)
        after = sum(median["with shapes"][n] for n in group)
        print(f"{label}: {before * 1e3:.1f} -> {after * 1e3:.1f} ms in all ({after / max(before, 1e-12):.2f}x)")
    for way in profiles:
        errors = [abs(job["predicted_s"] / job["measured_s"] - 1) for name in both for job in runs[way][name]]
        print(f"{way}: |predicted - measured| / measured median {np.median(errors):.1%}, "
              f"p90 {np.percentile(errors, 90):.1%}")


if __name__ == "__main__":
    main()
