"""The sentinel: a short fixed GEMM and a copy, timed on a job's device, so that every recorded
time carries the machine's speed at that moment.

A worker probes before a job when its last probe on that device is older than EVERY_S (so its
first job of a run probes at the run's start, and a long run every EVERY_S), and again after a
job whose executions took EVERY_S or more; the runner has every worker probe its CPU once more
when the jobs are done (the run's end). A probe costs about 3 ms on a CPU. Calibration divides
each recorded time by the speed ratio of its probe to the profile's own (`cost/refit.py`),
and the run reports the probes' spread as its noise.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import torch

EVERY_S = 5.0
GEMM_N = 256              # 2 x 256^3 = 34 MFLOP: ~0.2 ms on a laptop core, microseconds on a GPU
COPY_ELEMENTS = 1 << 20   # 4 MiB of float32 each way
WARM = 3     # a fresh process's first GEMM ran 40% slow (thread pools, caches)
BEST_OF = 5
FIRST_WARM = 3  # probes' worth of warm-up in a process's first probe
# A probe's second round starts this long after its first. On 2 cores a probe taken as a job
# started, right after another worker's job ended, read 30-60x slow (5.5 ms for a 90 µs GEMM) in
# runs nothing disturbed: the other process's pool threads still spin a few ms after its work, and
# the probe's two threads wait on each other behind them. Once per EVERY_S per worker.
SETTLE_S = 0.02

_latest: dict[str, tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a CPU has none)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe(device: torch.device) -> dict[str, Any]:
    """Best of BEST_OF timings of the fixed GEMM and the copy on `device`, after WARM of each;
    on a CPU with torch's pools at the width the profile probed at (all the cores it may use),
    whatever the job about to run asked for (a job on one thread probed 2x slow)."""
    if device.type != "cpu" or torch.get_num_threads() == _width():
        return _probe(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(_width())
    try:
        return _probe(device)
    finally:
        torch.set_num_threads(threads)


def _width() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _probe(device: torch.device) -> dict[str, Any]:
    first = str(device) not in _made
    a, b, src, dst = _inputs(device)

    def best(step: Any) -> float:
        for _ in range(WARM):
            step()
        sync(device)
        fastest = float("inf")
        for _ in range(BEST_OF):
            started = time.perf_counter()
            step()
            sync(device)
            fastest = min(fastest, time.perf_counter() - started)
        return fastest

    if first:  # a process's first probes ran slow: its GEMM 1.6x (0.171 ms, then 0.108 every time);
        for _ in range(FIRST_WARM):  # with one warm GEMM, still 1.15x and its copy 1.3x (126/196 µs, then 110/146)
            best(lambda: torch.mm(a, b))
            best(lambda: dst.copy_(src))
    gemm, copy = best(lambda: torch.mm(a, b)), best(lambda: dst.copy_(src))
    time.sleep(SETTLE_S)  # again after a pause: the faster of the two rounds
    gemm, copy = min(gemm, best(lambda: torch.mm(a, b))), min(copy, best(lambda: dst.copy_(src)))
    return {"device": device.type, "gemm_s": gemm, "copy_s": copy,
            "at": time.time(), **({"threads": torch.get_num_threads()} if device.type == "cpu" else {})}


_made: dict[str, tuple[Any, ...]] = {}


def _inputs(device: torch.device) -> tuple[Any, ...]:
    """The probe's operands, made once per device (making them costs more than the probe)."""
    key = str(device)
    if key not in _made:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(GEMM_N, GEMM_N, generator=gen).to(device)
        b = torch.randn(GEMM_N, GEMM_N, generator=gen).to(device)
        src = torch.ones(COPY_ELEMENTS).to(device)
        _made[key] = (a, b, src, torch.empty_like(src))
    return _made[key]


def latest(device: torch.device, *, force: bool = False) -> dict[str, Any]:
    """This process's last probe on `device`, probed again when older than EVERY_S (or forced)."""
    key = str(device)
    with _lock:
        found = _latest.get(key)
        if force or found is None or time.monotonic() - found[0] > EVERY_S:
            found = (time.monotonic(), probe(device))
            _latest[key] = found
        return found[1]


def reset() -> None:
    """Forget the probes (tests)."""
    with _lock:
        _latest.clear()
