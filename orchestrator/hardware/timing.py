"""Timing helpers shared by the CPU and GPU microbenchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


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
    """Median wall time of one synchronised call (latency, not throughput)."""
    fn()
    sync()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]
