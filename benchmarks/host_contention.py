"""CPU kernels beside a busy GPU: does a GPU job's host thread slow the CPU jobs next to it?

    python benchmarks/host_contention.py [--seconds 2]

Times small CPU kernels (a 1M-element dot, a 256³ GEMM, a 4 MiB copy) on all cores, on all but
one and on all but two, first with the machine quiet, then while another process keeps the GPU
busy the way a GPU job does (launch, then wait in torch.cuda.synchronize, which spins a host
core). On a lent H100 VM a demo run's CPU jobs took 8 ms each (a 1M dot normally takes 28 µs)
while the GPU worker ran its jobs; this shows whether leaving the GPU worker a core avoids it.
Without CUDA the "busy" process spins a core in Python instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

BUSY = """
import sys, time, torch
if torch.cuda.is_available():
    a = torch.randn(2048, 2048, device="cuda")
    while True:
        for _ in range(4):
            a @ a
        torch.cuda.synchronize()
else:
    while True:
        pass
"""


def median_us(fn, seconds: float) -> float:
    for _ in range(10):
        fn()
    times = []
    ends = time.perf_counter() + seconds
    while time.perf_counter() < ends or len(times) < 20:
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per kernel and setting")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    x, y = torch.randn(1 << 20), torch.randn(1 << 20)
    a = torch.randn(256, 256)
    src, dst = torch.ones(1 << 20), torch.empty(1 << 20)
    kernels = {"dot 1M": lambda: torch.dot(x, y), "gemm 256": lambda: a @ a, "copy 4 MiB": lambda: dst.copy_(src)}
    counts = sorted({cores, max(1, cores - 1), max(1, cores - 2)}, reverse=True)
    print(f"{cores} cores; busy neighbour: {'a GPU loop (matmul, synchronize)' if torch.cuda.is_available() else 'a Python spin'}")
    print("| threads | neighbour | " + " | ".join(kernels) + " |")
    print("| --- | --- |" + " --- |" * len(kernels))
    for busy in (False, True):
        neighbour = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
        try:
            if neighbour:
                time.sleep(3 if torch.cuda.is_available() else 0.5)  # CUDA context up, loop running
            for threads in counts:
                torch.set_num_threads(threads)
                cells = [f"{median_us(fn, args.seconds):.0f} µs" for fn in kernels.values()]
                print(f"| {threads} | {'busy' if busy else 'quiet'} | " + " | ".join(cells) + " |", flush=True)
        finally:
            if neighbour:
                neighbour.kill()
                neighbour.wait()


if __name__ == "__main__":
    main()
