"""Timing helpers shared by the CPU and GPU microbenchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_seconds(fn: Callable[[], object], *, min_time_s: float, sync: Callable[[], None] = lambda: None,
                 min_samples: int = 3, max_samples: int = 10_000) -> float:
    """Best per-call wall time of `fn` (after one warm-up), batching calls so a sample lasts ≥ ~1 ms."""
    start = time.perf_counter()
    fn()  # warm-up, and a first idea of one call's time (never counted)
    sync()
    single = max(time.perf_counter() - start, 1e-9)
    batch = max(1, min(10_000, int(1e-3 / single)))
    best = float("inf")
    spent = 0.0
    samples = 0
    while samples < max_samples and (samples < min_samples or spent < min_time_s):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        sync()
        elapsed = time.perf_counter() - t0
        best = min(best, elapsed / batch)
        spent += elapsed
        samples += 1
    return best


def median_seconds(fn: Callable[[], object], *, samples: int, sync: Callable[[], None] = lambda: None) -> float:
    """Median wall time of one synchronised call (latency, not throughput), over `samples` calls."""
    return typical_seconds(fn, min_time_s=0.0, sync=sync, min_samples=samples, max_samples=samples)


def typical_seconds(fn: Callable[[], object], *, min_time_s: float, sync: Callable[[], None] = lambda: None,
                    min_samples: int = 5, max_samples: int = 1_000) -> float:
    """Median wall time of one synchronised call, over at least `min_samples` calls and
    `min_time_s`: what a job repeating `fn` reports (the harness takes the median too), where
    the best of many calls is what the hardware can do. A pageable copy varies run to run (a lent
    H100 VM moved a 32 MB input at 6 GB/s in jobs, 9-10 at the best of a profile's copies)."""
    fn()
    sync()
    times: list[float] = []
    spent = 0.0
    while len(times) < max_samples and (len(times) < min_samples or spent < min_time_s):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    times.sort()
    return times[len(times) // 2]


def sync_for(device: Any) -> Callable[[], None]:
    """What waits for `device`'s queued work: a CUDA device's synchronize; a CPU has none."""
    if device.type == "cuda":
        import torch

        return lambda: torch.cuda.synchronize(device)
    return lambda: None
