"""GPU microbenchmarks through PyTorch (imported lazily): GEMM per dtype, device memory
bandwidth, host↔device bandwidth (pinned and pageable), launch latency, GPU↔GPU bandwidth.

Every function takes a torch device, so tests run the same code on a CPU stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.hardware.timing import best_seconds, median_seconds, sync_for, typical_seconds

MiB = 1 << 20
PAGEABLE_SIZES = (1 * MiB, 8 * MiB, 64 * MiB)  # plus the plan's transfer_bytes
GPU_DTYPES = ("float64", "float32", "tfloat32", "bfloat16", "float16")


@dataclass(frozen=True)
class GpuBenchPlan:
    gemm_sizes: tuple[int, ...]
    min_time_s: float
    device_bytes: int
    transfer_bytes: int

    @classmethod
    def create(cls, *, quick: bool, memory_free_bytes: int | None) -> GpuBenchPlan:
        # Device buffers far larger than L2 (50 MiB on H100, NVIDIA Hopper tuning guide); at most
        # a tenth of free memory.
        budget = (memory_free_bytes or 8 << 30) // 10
        device = int(min(1024 * MiB if quick else 2048 * MiB, budget))
        if quick:
            return cls((256, 1024, 4096), 0.05, device, 256 * MiB)
        return cls((256, 512, 1024, 2048, 4096, 8192), 0.2, device, 512 * MiB)


def gemm_flops(device: Any, dtype: str, n: int, *, min_time_s: float) -> float:
    """FLOP/s of an n×n×n product; `tfloat32` is float32 with TF32 tensor cores allowed."""
    import torch

    torch_dtype = {"tfloat32": torch.float32}.get(dtype) or getattr(torch, dtype)
    a = torch.rand(n, n, device=device, dtype=torch_dtype)
    b = torch.rand(n, n, device=device, dtype=torch_dtype)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tfloat32"
    try:
        seconds = best_seconds(lambda: torch.mm(a, b), min_time_s=min_time_s, sync=sync_for(device))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2.0 * n**3 / seconds


def device_bandwidth(device: Any, nbytes: int, *, min_time_s: float) -> float:
    """Device-memory copy, bytes read plus written per second."""
    import torch

    src = torch.ones(nbytes // 4, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    seconds = best_seconds(lambda: dst.copy_(src), min_time_s=min_time_s, sync=sync_for(device))
    return 2 * src.numel() * 4 / seconds


def transfer_bandwidths(device: Any, nbytes: int, *, min_time_s: float) -> dict[str, float]:
    """Host→device and device→host, bytes/s: pinned at the best the link does, pageable as jobs
    see it (`pageable_copies`)."""
    import torch

    count = nbytes // 4
    pin = device.type == "cuda"
    pinned = torch.ones(count, dtype=torch.float32, pin_memory=pin)
    on_device = torch.empty(count, dtype=torch.float32, device=device)
    sync = sync_for(device)
    results = {}
    for key, fn in (
        ("h2d_bandwidth", lambda: on_device.copy_(pinned, non_blocking=pin)),
        ("d2h_bandwidth", lambda: pinned.copy_(on_device, non_blocking=pin)),
    ):
        results[key] = nbytes / best_seconds(fn, min_time_s=min_time_s, sync=sync, min_samples=3)
    pageable = pageable_copies(device, nbytes, min_time_s=min_time_s)
    results["h2d_bandwidth_pageable"], results["d2h_bandwidth_pageable"] = pageable["h2d"], pageable["d2h"]
    return results


def pageable_copies(device: Any, nbytes: int, *, min_time_s: float) -> dict[str, float]:
    """Pageable host→device and device→host bytes/s as a job's data moves: the inputs from the
    same host tensor every execution, each result into a new host tensor (`.to("cpu")`, whose
    fresh pages fault in as the copy writes them: a lent H100 VM brought a 32 MB axpy result
    back at about 1 GB/s, against 15 GB/s into a reused buffer); the median call, as the harness
    reports a job's executions."""
    import torch

    sync = sync_for(device)
    host = torch.ones(nbytes // 4, dtype=torch.float32)
    on_device = host.to(device)
    return {"h2d": nbytes / typical_seconds(lambda: host.to(device, copy=True), min_time_s=min_time_s, sync=sync),
            "d2h": nbytes / typical_seconds(lambda: on_device.to("cpu", copy=True), min_time_s=min_time_s, sync=sync)}


def pageable_curves(device: Any, sizes: tuple[int, ...], *, min_time_s: float) -> dict[str, dict[int, float]]:
    """Pageable host→device and device→host bandwidth at each copy size, bytes/s (`pageable_copies`)."""
    curves: dict[str, dict[int, float]] = {"h2d": {}, "d2h": {}}
    for nbytes in sizes:
        for key, rate in pageable_copies(device, nbytes, min_time_s=min_time_s).items():
            curves[key][nbytes] = rate
    return curves


def launch_latency_s(device: Any, *, samples: int = 200) -> float:
    """Median time of one tiny kernel, launched and waited for."""
    import torch

    x = torch.zeros(1, device=device)
    return median_seconds(lambda: x.add_(1.0), samples=samples, sync=sync_for(device))


def p2p_bandwidth(source: Any, target: Any, nbytes: int, *, min_time_s: float) -> float:
    """One-way copy bandwidth between two devices, bytes/s."""
    import torch

    src = torch.ones(nbytes // 4, device=source, dtype=torch.float32)
    dst = torch.empty(nbytes // 4, device=target, dtype=torch.float32)
    sync_a, sync_b = sync_for(source), sync_for(target)

    def both() -> None:
        sync_a()
        sync_b()

    return nbytes / best_seconds(lambda: dst.copy_(src), min_time_s=min_time_s, sync=both)
