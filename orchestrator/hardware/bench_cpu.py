"""CPU microbenchmarks: the GEMM curve per dtype, STREAM-style bandwidth, dispatch overhead and
the Python for-loop dot product against the vectorized one.

GEMM runs on PyTorch (the kernels' library); bandwidth is NumPy's copy (what a user measures
beside it) and a one-pass torch triad, counting bytes read plus bytes written as STREAM does
(McCalpin, STREAM FAQ).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from orchestrator.hardware.timing import best_seconds, sync_for
from orchestrator.placement import Placement
from orchestrator.profile.model import LoopVsVector, Sentinel

MiB = 1 << 20


@dataclass(frozen=True)
class CpuBenchPlan:
    """Sizes and time budgets; `quick` fits in ~20 s on 2 cores, `full` in about a minute."""

    gemm_sizes: tuple[int, ...]
    min_time_s: float
    stream_bytes: int
    loop_n: int

    @classmethod
    def for_machine(cls, *, quick: bool, llc_bytes: int | None, available_bytes: int) -> CpuBenchPlan:
        # Arrays far larger than the last-level cache so the cache cannot serve them (STREAM rule:
        # each array at least 4× the LLC), capped at an eighth of free memory.
        llc = llc_bytes or 32 * MiB
        stream = max(4 * llc, 128 * MiB)
        if quick:  # twice the LLC, or 512 MiB where that is less (never less than the LLC): a VM
            # reports its host's whole L3 (480 MiB on the development VM, for 2 vCPUs), and its
            # 960 MiB arrays took 7.2 s to map and time in a fresh process, 512 MiB 1.0 s, both
            # reading 23.0-23.5 GB/s copy and 27.6-28.6 triad
            stream = max(min(2 * llc, 512 * MiB), llc, 128 * MiB)
        stream = int(min(stream, available_bytes // 8, 2048 * MiB))
        if quick:
            return cls((64, 256, 1024, 2048), 0.08, stream, 200_000)
        return cls((64, 128, 256, 512, 1024, 2048, 4096), 0.25, stream, 1_000_000)


    def sizes_for(self, dtype: str) -> tuple[int, ...]:
        """The ladder for one dtype: float32 always reaches n=4096, since its peak is the headline."""
        return self.gemm_sizes + ((4096,) if dtype == "float32" and 4096 not in self.gemm_sizes else ())


def gemm_flops(dtype: str, n: int, *, min_time_s: float) -> float:
    """FLOP/s of an n x n x n matrix product (2n^3 FLOPs) in `dtype`, with PyTorch: the library
    the kernels run on (its MKL SGEMM and NumPy's OpenBLAS agree within 5% at n >= 1024 here, and
    mixing both thread pools in one process made small products 100x slower)."""
    import torch

    torch_dtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(0)
    a = torch.rand((n, n), generator=gen).to(torch_dtype)
    b = torch.rand((n, n), generator=gen).to(torch_dtype)
    out = torch.empty((n, n), dtype=torch_dtype)
    seconds = best_seconds(lambda: torch.mm(a, b, out=out), min_time_s=min_time_s)
    return 2.0 * n**3 / seconds


def warm_up(seconds: float = 0.3) -> None:
    """Spin up torch's thread pool and the cores' clocks before anything is timed."""
    import time

    import torch

    a = torch.rand((512, 512))
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        torch.mm(a, a)


def stream_bandwidth(nbytes: int, *, min_time_s: float) -> tuple[float, float]:
    """(copy, triad) bytes/s on float64 arrays of `nbytes` each; pages are touched before timing."""
    import torch

    n = max(1, nbytes // 8)
    src = np.ones(n)
    dst = np.zeros(n)
    copy_s = best_seconds(lambda: np.copyto(dst, src), min_time_s=min_time_s, min_samples=5)
    a, b, c = torch.from_numpy(dst), torch.from_numpy(src), torch.ones(n, dtype=torch.float64)
    triad_s = best_seconds(lambda: torch.add(b, c, alpha=3.0, out=a), min_time_s=min_time_s, min_samples=5)
    return 2 * n * 8 / copy_s, 3 * n * 8 / triad_s


def dispatch_overhead_s(*, min_time_s: float) -> float:
    """Seconds of one NumPy call on one-element arrays: the fixed cost of every vectorized op."""
    x = np.ones(1)
    out = np.empty(1)
    return best_seconds(lambda: np.add(x, x, out=out), min_time_s=min_time_s)


def python_loop_dot(n: int) -> LoopVsVector:
    """The same dot product as a Python for-loop over lists and as `np.dot`."""
    rng = np.random.default_rng(0)
    x, y = rng.random(n), rng.random(n)
    xs, ys = x.tolist(), y.tolist()

    def loop() -> float:
        total = 0.0
        for a, b in zip(xs, ys):
            total += a * b
        return total

    loop_s = best_seconds(loop, min_time_s=0.0, min_samples=3, max_samples=3)
    vector_s = best_seconds(lambda: np.dot(x, y), min_time_s=0.05)
    return LoopVsVector(n=n, loop_s=loop_s, vectorized_s=vector_s, speedup=loop_s / vector_s)


def cache_bandwidth(llc_bytes: int | None, *, min_time_s: float) -> float | None:
    """Copy bandwidth (read + write) of two arrays that together fill a quarter of the LLC."""
    if not llc_bytes:
        return None
    import torch

    n = max(1 << 18, min(llc_bytes // 8, 64 << 20)) // 4
    src = torch.ones(n, dtype=torch.float32)
    dst = torch.zeros_like(src)  # pages touched before timing
    return 2 * n * 4 / best_seconds(lambda: dst.copy_(src), min_time_s=min_time_s, min_samples=10)


# 256 KiB to 256 MiB of working set, every power of two: the caches' edges fall between two
# sizes a factor of 2 apart. Measured at every fourth power, the 2-core VM's curve (190 GB/s at
# 2 MiB, 109 at 4, 55 at 8 and flat to 64) was read at 80 GB/s for 8 MiB between its 4 and 16 MiB
# points, and a dot of 1M float32 (8 MiB, 54 GB/s) taught its scale 1.6 there.
BANDWIDTH_SIZES = tuple(1 << e for e in range(18, 29))


def bandwidth_by_size(available_bytes: int, *, min_time_s: float) -> dict[int, float]:
    """Copy bandwidth (read + write, bytes/s) by working set (both arrays together), float32
    torch copies on every core as the kernels run them: from the caches at small sizes to memory
    at large ones. A 16 MB axpy ran at 80 GB/s here where the single 64 MiB copy measured 32."""
    import torch

    def copy_s(n: int) -> float:
        src = torch.ones(n, dtype=torch.float32)
        dst = torch.ones(n, dtype=torch.float32)  # written: its pages are mapped before timing
        return best_seconds(lambda: dst.copy_(src), min_time_s=min_time_s, min_samples=10)

    call = copy_s(1)  # the call itself, which the model counts as overhead, not as bytes moved
    found = {}
    for size in BANDWIDTH_SIZES:
        if size > available_bytes // 8:
            break
        seconds = copy_s(size // 8)  # two float32 arrays of size / 8 elements
        found[size] = size / max(seconds - call, seconds / 2)
    return found


def torch_call_s() -> float:
    """Median seconds of one execution of a 16-element dot through orch's harness on the CPU,
    warm (200 timed after 20): a torch call and the harness's own steps, nothing else."""
    from orchestrator.execute.harness import execute
    from orchestrator.execute.task import Task

    return execute(Task("torch-call", "dot", {"n": 16}, repeats=200, warmup=20)).measured_s


def torch_op_overhead_s(device: str = "cpu") -> float:
    """Seconds per PyTorch eager op in a training step, from the real training kernel on a
    model so small that only the per-op cost is left (9 ops per layer + 6 per step): the
    difference between 80 and 40 steps, so building the model and the rest of each execution's
    fixed cost cancel."""
    from orchestrator.execute.harness import execute
    from orchestrator.execute.task import Task

    def fastest(steps: int) -> float:
        params = {"samples": 256 * steps, "features": 4, "hidden": [4], "classes": 2, "epochs": 1, "batch_size": 256}
        result = execute(Task("torch-op", "train_mlp", params, placement=Placement("cpu") if device == "cpu" else Placement("gpu", 1),
                              data="device" if device != "cpu" else "host", repeats=5, warmup=2))
        return min(result.times_s)

    short, long = fastest(40), fastest(80)
    layers = 2
    per_step = (long - short) / 40
    if per_step <= 0:  # disturbed: fall back to the long run's average, fixed costs included
        per_step = long / 80
    return per_step / (9 * layers + 6)


def ddp_step_s(device: str = "cpu") -> float:
    """Seconds DistributedDataParallel adds to a training step (its reducer, the gradient
    bucket, the all-reduce call of a one-rank group: gloo on the CPU, NCCL on a GPU): the same
    tiny model trained for 40 steps as a gang of one and alone, best of 5 each."""
    import os
    import tempfile

    from orchestrator.execute.gang import rank_main
    from orchestrator.execute.harness import execute
    from orchestrator.execute.task import Task

    steps = 40
    params = {"samples": 256 * steps, "features": 4, "hidden": [4], "classes": 2, "epochs": 1, "batch_size": 256}
    task = Task("ddp-probe", "train_mlp", params, placement=Placement("cpu") if device == "cpu" else Placement("gpu", 1),
                data="device" if device != "cpu" else "host", repeats=5, warmup=2)
    alone = min(execute(task).times_s)
    with tempfile.TemporaryDirectory(prefix="orch-ddp-") as folder:  # a one-rank group's rendezvous
        one_rank = Placement.parse("cpu@1") if device == "cpu" else task.placement
        gang = min(rank_main(dataclasses.replace(task, placement=one_rank), 0, 1,
                             f"file://{os.path.join(folder, 'rendezvous')}")["times_s"])
    return max((gang - alone) / steps, 1e-7)


SELECT_ROWS, SELECT_ROW = 512, 4096  # 8 MiB of float32: the rows a row-wise top-k works on
SELECT_KS = (1, 16, 64)


def selection_s_per_element(device: str = "cpu", *, min_time_s: float) -> tuple[dict[int, float], float]:
    """Seconds per element of torch.topk along rows, at each of SELECT_KS, and of a full sort
    of the same rows: the cost of sorting work, which has no FLOPs to count."""
    import torch

    x = torch.randn(SELECT_ROWS, SELECT_ROW, generator=torch.Generator().manual_seed(0)).to(device)
    sync = sync_for(x.device)
    elements = x.numel()
    topk = {k: best_seconds(lambda k=k: torch.topk(x, k, dim=1), min_time_s=min_time_s, sync=sync) / elements
            for k in SELECT_KS}
    full = best_seconds(lambda: torch.sort(x, dim=1), min_time_s=min_time_s, sync=sync) / elements
    return topk, full


SOFTMAX_ROWS, SOFTMAX_ROW = 4096, 256  # 4 MiB of float32: attention scores of a few heads


def softmax_s_per_element(device: str = "cpu", *, min_time_s: float) -> float:
    """Seconds per element of torch.softmax along rows: the exponentials, maxima, sums and
    divisions of a softmax or of attention's scores, which no FLOP counter counts (a 4-head
    attention of 1,024 tokens took 5.0 ms here where its two products take 3.5)."""
    import torch

    x = torch.randn(SOFTMAX_ROWS, SOFTMAX_ROW, generator=torch.Generator().manual_seed(0)).to(device)
    sync = sync_for(x.device)
    return best_seconds(lambda: torch.softmax(x, dim=1), min_time_s=min_time_s, sync=sync) / x.numel()


SENTINEL_PROBES = 7


def sentinel_times(device: str) -> Sentinel:
    """The run-time sentinel (execute/sentinel.py) as profiled: the speed runs are compared to,
    the median of SENTINEL_PROBES probes, as typical as a run's probe is. One probe varies by
    15% here; a profile that kept one 20% slower than its runs' probes made calibration
    predict every held-out job about 20% slow (the runs' times, normalised to that speed,
    came out 20% long)."""
    import statistics

    import torch

    from orchestrator.execute import sentinel

    found = [sentinel.probe(torch.device(device)) for _ in range(SENTINEL_PROBES)]
    return Sentinel(gemm_s=statistics.median(f["gemm_s"] for f in found),
                    copy_s=statistics.median(f["copy_s"] for f in found))
