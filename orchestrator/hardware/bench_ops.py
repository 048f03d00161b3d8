"""Each op family's real kernel, timed at reference sizes on this machine.

The cost model compares these times with what it predicts from the GEMM curve and bandwidth
alone, and carries the ratio to other sizes (docs/cost-model.md, "op scale"). Every op but
python_dot (a Python loop, timed by the profile itself) has references on the CPU.

The CPU's references are timed in two passes over every op, and each keeps the faster: a
disturbance (another tenant, the host) only ever slows a kernel down, and is rarely there for
both. One quick profile timed solve n=1024 at 277 ms in a single pass, where it takes 8 ms.
"""

from __future__ import annotations

from typing import Any

from orchestrator.placement import Placement
from orchestrator.profile.model import OpBenchmark

# Two reference jobs per op (a small and a larger one, ~4-8x the work): tens to a few hundred
# milliseconds on a 2-core VM. The GPU runs the CPU's first one too (where launches and
# cuSOLVER's host-side work dominate: 2-5x the model's time on an H100) and two large ones,
# where the kernel does. The factorisations and the learning kernels have a third one on the
# CPU (SMALLER_REFERENCE).
CPU_REFERENCE: dict[str, list[dict[str, Any]]] = {
    # the vector kernels: how near the measured copy bandwidth each one runs (torch.dot reads at
    # about a third of the two-core copy rate here, axpy at half, sum at a third)
    "dot": [{"n": 1 << 20}, {"n": 1 << 24}],
    "sum": [{"n": 1 << 20}, {"n": 1 << 24}],
    "axpy": [{"n": 1 << 20}, {"n": 1 << 24}],
    # matmul: how near the GEMM curve (best of batched mm(out=) calls) one execution through the
    # harness runs (the median of single calls, each allocating its result)
    "matmul": [{"m": 256, "n": 256, "k": 256}, {"m": 1024, "n": 1024, "k": 1024}],
    "batched_matmul": [{"batch": 128, "m": 128, "n": 128, "k": 128}, {"batch": 256, "m": 256, "n": 256, "k": 256}],
    # the factorisations at sizes that are multiples of neither 128 nor 512 (where LAPACK runs
    # slow: ALIGNED_REFERENCE)
    "solve": [{"n": 1000, "nrhs": 1}, {"n": 2000, "nrhs": 1}],
    "cholesky": [{"n": 1000}, {"n": 2000}],
    "qr": [{"m": 2000, "n": 500}, {"m": 3000, "n": 750}],
    "svd": [{"m": 1000, "n": 250}, {"m": 2000, "n": 500}],
    "eigh": [{"n": 500}, {"n": 1000}],
    "lstsq": [{"m": 4000, "n": 250}, {"m": 8000, "n": 500}],
    "fft": [{"n": 1 << 20}, {"n": 1 << 22}],
    # k-means: a small one of few features and clusters, where per-sample index work (argmin
    # over short rows, one-hot, bincount) outweighs the GEMMs, and a large one
    "kmeans": [{"samples": 10_000, "features": 16, "clusters": 8, "iterations": 5},
               {"samples": 100_000, "features": 32, "clusters": 16, "iterations": 5}],
    "train_linear": [{"samples": 20_000, "features": 128, "epochs": 1, "batch_size": 256},
                     {"samples": 20_000, "features": 512, "epochs": 1, "batch_size": 1024}],
    "train_mlp": [{"samples": 10_000, "features": 128, "hidden": [256, 256], "classes": 10, "epochs": 1,
                   "batch_size": 256},
                  {"samples": 10_000, "features": 256, "hidden": [512, 512], "classes": 10, "epochs": 1,
                   "batch_size": 512}],
}
# A third CPU reference where the first two leave common sizes to a trend (`rates.scale_at`): a
# few times less work than the first for the factorisations and training, whose efficiency keeps
# falling below it (a solve of n=384 was predicted at half its time, qr of 768 x 256 and lstsq of
# 2048 x 192 at 0.5-0.65, an MLP of one 128-wide layer at 0.7); for k-means the large one's
# shape at a fifth of its samples (its first is of another shape: few features and clusters).
# Measured here they predicted held-out factorisations within 9-12% at the median instead of 21%
# (docs/benchmarks.md, 2.9). Under a millisecond to ten each. The vector kernels, the GEMMs and
# the FFT take one too, between their two or below the smaller (a batched GEMM of 16 x 128^3 sat
# at an eighth of the smaller's work), and with float64 timed at every CPU size each of these ops
# has three float64 points: its own scale over sizes (cost/model.py, `float64_scales`).
SMALLER_REFERENCE: dict[str, dict[str, Any]] = {
    "dot": {"n": 1 << 22},
    "sum": {"n": 1 << 22},
    "axpy": {"n": 1 << 22},
    "matmul": {"m": 640, "n": 640, "k": 640},
    "batched_matmul": {"batch": 32, "m": 64, "n": 64, "k": 64},
    "fft": {"n": 1 << 18},
    "solve": {"n": 400, "nrhs": 1},
    "cholesky": {"n": 400},
    "qr": {"m": 800, "n": 200},
    "svd": {"m": 400, "n": 100},
    "eigh": {"n": 200},
    "lstsq": {"m": 1600, "n": 100},
    "kmeans": {"samples": 20_000, "features": 32, "clusters": 16, "iterations": 5},
    "train_linear": {"samples": 10_000, "features": 32, "epochs": 1, "batch_size": 256},
    "train_mlp": {"samples": 5_000, "features": 64, "hidden": [128], "classes": 10, "epochs": 1, "batch_size": 256},
}
CPU_REFERENCE.update({op: [*CPU_REFERENCE[op], small] for op, small in SMALLER_REFERENCE.items()})

_GPU_LARGE: dict[str, list[dict[str, Any]]] = {
    "batched_matmul": [{"batch": 512, "m": 256, "n": 256, "k": 256}, {"batch": 256, "m": 1024, "n": 1024, "k": 1024}],
    "solve": [{"n": 4096, "nrhs": 1}, {"n": 8192, "nrhs": 1}],
    "cholesky": [{"n": 4096}, {"n": 8192}],
    "qr": [{"m": 8192, "n": 2048}, {"m": 16384, "n": 4096}],
    "svd": [{"m": 4096, "n": 1024}, {"m": 8192, "n": 2048}],
    "eigh": [{"n": 2048}, {"n": 4096}],
    "lstsq": [{"m": 16384, "n": 1024}, {"m": 32768, "n": 2048}],
    "fft": [{"n": 1 << 24}, {"n": 1 << 26}],
    "kmeans": [{"samples": 1_000_000, "features": 64, "clusters": 64, "iterations": 5},
               {"samples": 4_000_000, "features": 64, "clusters": 64, "iterations": 5}],
    "train_linear": [{"samples": 200_000, "features": 512, "epochs": 1, "batch_size": 1024},
                     {"samples": 200_000, "features": 2048, "epochs": 1, "batch_size": 4096}],
    "train_mlp": [{"samples": 200_000, "features": 512, "hidden": [2048, 2048], "classes": 100, "epochs": 1,
                   "batch_size": 1024},
                  {"samples": 200_000, "features": 1024, "hidden": [4096, 4096], "classes": 100, "epochs": 1,
                   "batch_size": 4096}],
}

GPU_REFERENCE = {op: [CPU_REFERENCE[op][0], *large] for op, large in _GPU_LARGE.items()}

# LAPACK's factorisations on the CPU again at sizes aligned in one of their aligned dimensions
# (`Op.aligned_sizes`: n of a square op, the panel width n and the leading dimension m of a tall
# one), a few classes each, the others unaligned: what they run slower than the op's scale is
# the penalty of that dimension's class, the median of its references (cost/alignment.py). MKL
# here: a Cholesky of 1024 3.6x slower per FLOP than of 1000, of 1536 2.3-2.8x, of 896 1.25-1.4x;
# on one thread lstsq of 4000 x 256 1.77x that of 4000 x 250, of 4096 x 250 1.36x. A tall op's
# are of the shape of its unaligned references (m = 4n for qr and svd, 16n for lstsq): its scale
# is read by FLOPs, and shape costs too (on one thread lstsq of 2048 x 250, m = 8n, read
# 1.0-1.1x the scale its m = 16n references make, where 4096 x 250 read 1.3x). Classes above the largest
# measured read its penalty: n = 512 and m = 2048 at that shape took 55-85 ms each (svd, lstsq),
# and the quick profile a minute.
_QUARTER = [{"m": 1000, "n": 256}, {"m": 1500, "n": 384},  # n alone: classes 256, 128
            {"m": 1024, "n": 250}, {"m": 1536, "n": 375}, {"m": 1152, "n": 290}]  # m alone: 1024, 512, 128
ALIGNED_REFERENCE: dict[str, list[dict[str, Any]]] = {
    "solve": [{"n": 1024, "nrhs": 1}, {"n": 1536, "nrhs": 1}, {"n": 896, "nrhs": 1}],
    "cholesky": [{"n": 1024}, {"n": 1536}, {"n": 896}],
    "qr": _QUARTER,
    "svd": _QUARTER,
    "eigh": [{"n": 512}, {"n": 1024}, {"n": 384}],
    "lstsq": [{"m": 4000, "n": 256}, {"m": 2000, "n": 128},
              {"m": 4096, "n": 250}, {"m": 3072, "n": 190}, {"m": 1536, "n": 100}, {"m": 3200, "n": 200}],
}

# float64 runs each op's kernel at float64's own level (cost/model.py, `float64_ratios`): on an
# H100 cuSOLVER's float64 qr and svd took 2x what float32's scale said, its eigh half. Timed at
# every CPU reference, the aligned ones included (float64's own scale over sizes and its own
# penalties: `float64_scales`, `alignment_penalties`), and a GPU's first two (the level is their
# median: one alone varied 2x between two quick profiles here). Training in float64 is rare:
# its ops keep float32's.
FLOAT64_OPS = tuple(op for op in CPU_REFERENCE if not op.startswith("train_"))


def references(op: str, device: str, cores: int = 1) -> list[tuple[dict[str, Any], str, int | None]]:
    """(params, dtype, threads) of every reference run of `op` on a "cpu" of `cores` or a "gpu":
    threads None runs on all the cores, 1 on one (a CPU's float32 references again, where it
    has more than one core: the planner runs a job on one thread where that is faster; and a
    LAPACK factorisation's float64 ones at the unaligned sizes, so a float64 job reads its own
    one-thread scale: svd of 1600 x 180 float64 took 9.7 ms on one thread here and 16 on both,
    where float32's one-thread scale at float64's GEMM rate said 11.4 and sent it to both. Of the
    other ops none ran faster on one thread at any reference, in three profiles here)."""
    sizes = (GPU_REFERENCE if device == "gpu" else CPU_REFERENCE)[op]
    aligned = ALIGNED_REFERENCE.get(op, []) if device == "cpu" else []
    wide = ([*sizes, *aligned] if device == "cpu" else sizes[:2]) if op in FLOAT64_OPS else []
    single = [*sizes, *aligned] if device == "cpu" and cores > 1 else []
    single64 = sizes if single and op in ALIGNED_REFERENCE else []
    return ([(params, "float32", None) for params in [*sizes, *aligned]] + [(params, "float64", None) for params in wide]
            + [(params, "float32", 1) for params in single] + [(params, "float64", 1) for params in single64])


# LAPACK's tall factorisations across shapes, on a CPU (cost/shapes.py): m from 1000 to 4000 rows
# and n of 125 and 250 columns, multiples of no alignment class, on all the cores and on one
# thread, in float32 and float64 (MKL here: lstsq of 2000 x 250 float32 6.7x slower on both cores
# than on one, of 4000 x 250 1.5x, of 8000 x 250 1.1x; at n = 500 both cores win, 0.6-1.4x). With
# LAPACK's one-thread references in both passes, a quick profile took 103-109 s here, 72-74 before.
SHAPE_OPS = ("qr", "svd", "lstsq")
SHAPE_REFERENCE: list[dict[str, Any]] = [{"m": m, "n": n} for m in (1000, 2000, 3000, 4000) for n in (125, 250)]


def shape_references(op: str, cores: int = 1) -> list[tuple[dict[str, Any], str, int | None]]:
    """(params, dtype, threads) of `op`'s CPU references across tall shapes (none for another
    op): every shape in both dtypes on all the cores, and on one thread where there are more."""
    if op not in SHAPE_OPS:
        return []
    counts = (None, 1) if cores > 1 else (None,)
    return [(params, dtype, threads) for threads in counts for dtype in ("float32", "float64")
            for params in SHAPE_REFERENCE]


GPU_WARMUP = 3
GPU_REPEATS = 3


def measure(op: str, params: dict[str, Any], placement: str, threads: int | None,
            gpu_ids: list[int] | None = None, dtype: str = "float32", shape: bool = False) -> OpBenchmark:
    from orchestrator.execute.harness import execute
    from orchestrator.execute.task import Task

    on_gpu = placement != "cpu"
    # a GPU job's first 2-3 executions run 2-3x slow (measured on an H200, docs/benchmarks.md)
    task = Task(f"{op}-reference", op, params, dtype, placement=Placement.parse(placement),
                data="device" if on_gpu else "host", repeats=GPU_REPEATS if on_gpu else 2,
                warmup=GPU_WARMUP if on_gpu else 1, threads=threads, checked=False)
    result = execute(task, gpu_ids)
    return OpBenchmark(params=params, dtype=dtype, data=task.data, measured_s=result.measured_s,
                       threads=1 if threads == 1 and not on_gpu else None, shape=shape)


def faster(first: OpBenchmark, second: OpBenchmark) -> OpBenchmark:
    """The faster of two timings of one reference."""
    return first if first.measured_s <= second.measured_s else second
