"""Where a `data: host` GPU job's time goes: host<->device copies timed one at a time (as a job's
executions are), into buffers that already exist and into fresh ones, beside the harness's own
measurement of the same jobs, in one process.

    python benchmarks/gpu_transfers.py

Needs a CUDA GPU. Prints the median of 20 single copies per row (after 3 warm-ups).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.execute.harness import execute
from orchestrator.execute.task import Task
from orchestrator.placement import Placement


def median_ms(fn, samples: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(samples):
        torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    gpu = torch.device("cuda", 0)
    print(f"{torch.cuda.get_device_name(0)}; one copy at a time, median ms (GB/s)")
    print("| MiB | h2d pageable | h2d pinned | d2h into existing pageable | d2h into a fresh tensor (.cpu()) | d2h pinned |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mib in (1, 4, 16, 64):
        n = mib * (1 << 20) // 4
        host, pinned = torch.rand(n), torch.rand(n).pin_memory()
        dev = torch.rand(n, device=gpu)
        rows = [median_ms(lambda: host.to(gpu)), median_ms(lambda: pinned.to(gpu, non_blocking=True)),
                median_ms(lambda: host.copy_(dev)), median_ms(lambda: dev.cpu()),
                median_ms(lambda: pinned.copy_(dev, non_blocking=True))]
        print(f"| {mib} | " + " | ".join(f"{ms:.3f} ({mib * 1.048576 / ms:.1f})" for ms in rows) + " |")
    print()
    print("| job (data: host, gpu) | harness measured_s | times_s |")
    print("| --- | --- | --- |")
    for op, params in (("dot", {"n": 1_000_000}), ("axpy", {"n": 1_000_000}), ("fft", {"n": 1 << 20}),
                       ("sum", {"n": 8_000_000}), ("matmul", {"m": 1024, "n": 256, "k": 256})):
        result = execute(Task(op, op, params, placement=Placement("gpu", 1), data="host", repeats=7, warmup=1))
        print(f"| {op} {params} | {result['measured_s'] * 1e3:.3f} ms | "
              f"{', '.join(f'{t * 1e3:.2f}' for t in result['times_s'])} |")


if __name__ == "__main__":
    main()
