"""LAPACK's slow sizes on this machine: each factorisation at multiples of 512 and of 128 beside
sizes that are multiples of neither, as time per FLOP relative to the unaligned neighbours.

    .venv/bin/python benchmarks/alignment.py [--threads T] [--dtype float32|float64]

Each size is timed through orch's harness (the median of 9 executions after a warm-up, as a job
is). Prints, per op and size, the milliseconds and the slowdown per FLOP over the geometric mean
of its unaligned neighbours' rates; beside it, the penalty the newest profile of this machine
in $ORCH_HOME (or --profile) measured for that size's class (cost/alignment.py). docs/cost-model.md, "LAPACK's
slow sizes", has one run's figures.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (op, the aligned sizes, the unaligned neighbours of each): square ops by n, tall ones by their
# panel width n and by their leading dimension m, each alone
SCANS = {
    "cholesky": [({"n": n}, [{"n": n - 24}, {"n": n + 16}]) for n in (512, 768, 896, 1024, 1536, 2048)],
    "solve": [({"n": n, "nrhs": 1}, [{"n": n - 24, "nrhs": 1}, {"n": n + 16, "nrhs": 1}]) for n in (512, 1024, 2048)],
    "eigh": [({"n": n}, [{"n": n - 24}, {"n": n + 16}]) for n in (512, 1024)],
    **{op: [*[({"m": 4000, "n": n}, [{"m": 4000, "n": n - 12}, {"m": 4000, "n": n + 12}]) for n in (256, 512)],
             *[({"m": m, "n": 250}, [{"m": m - 24, "n": 250}, {"m": m + 16, "n": 250}]) for m in (1024, 2048)]]
       for op in ("qr", "svd", "lstsq")},
}


def timed(op: str, params: dict, dtype: str, threads: int) -> float:
    from orchestrator.execute.harness import execute
    from orchestrator.execute.task import Task
    from orchestrator.placement import Placement

    task = Task(f"{op}-scan", op, params, dtype, placement=Placement("cpu"), data="host", repeats=9, warmup=1,
                threads=threads)
    return execute(task, None).measured_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--profile", help="whose measured penalties to print beside (default: this machine's)")
    args = parser.parse_args()
    from orchestrator.cost.alignment import alignment
    from orchestrator.ops import get as get_op
    from orchestrator.plan.hardware import hardware_for
    from orchestrator.profile.store import newest_for_host, resolve

    profile = resolve(args.profile) if args.profile else newest_for_host()
    hw = hardware_for(profile, calibrated=False) if profile else None
    if hw is None:
        print("(no profile of this machine in $ORCH_HOME: the scan alone)")
    for op, scans in SCANS.items():
        kernel = get_op(op)
        for aligned, neighbours in scans:
            seconds = timed(op, aligned, args.dtype, args.threads)
            rates = [kernel.flops(p) / timed(op, p, args.dtype, args.threads) for p in neighbours]
            slowdown = math.sqrt(rates[0] * rates[1]) / (kernel.flops(aligned) / seconds)
            profiled = hw.alignment_penalty("cpu:1" if args.threads == 1 else "cpu", op, aligned, args.dtype) \
                if hw else math.nan
            print(f"{op:9} {str(aligned):28} class {alignment(kernel, aligned):3}  {seconds * 1e3:8.3f} ms  "
                  f"{slowdown:5.2f}x per FLOP over its neighbours   profile's penalty {profiled:5.2f}")


if __name__ == "__main__":
    main()
