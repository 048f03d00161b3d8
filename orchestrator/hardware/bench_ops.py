"""Each op family's real kernel, timed once at a reference size on this machine.

The cost model compares these times with what it predicts from the GEMM curve and bandwidth
alone, and carries the ratio to other sizes (docs/cost-model.md, "op scale"). Ops the model
predicts from first principles (dot, sum, axpy, matmul, python_dot) are not listed.
"""

from __future__ import annotations

from typing import Any

from orchestrator.profile.model import OpBenchmark

# Reference jobs: tens of milliseconds on a 2-core VM; GPU sizes are larger so the kernel, not
# the launch, dominates.
CPU_REFERENCE: dict[str, dict[str, Any]] = {
    "batched_matmul": {"batch": 128, "m": 128, "n": 128, "k": 128},
    "solve": {"n": 1024, "nrhs": 1},
    "cholesky": {"n": 1024},
    "qr": {"m": 2048, "n": 512},
    "svd": {"m": 1024, "n": 256},
    "eigh": {"n": 512},
    "lstsq": {"m": 4096, "n": 256},
    "fft": {"n": 1 << 20},
    "kmeans": {"samples": 50_000, "features": 32, "clusters": 16, "iterations": 5},
    "train_linear": {"samples": 20_000, "features": 128, "epochs": 1, "batch_size": 256},
    "train_mlp": {"samples": 10_000, "features": 128, "hidden": [256, 256], "classes": 10, "epochs": 1,
                  "batch_size": 256},
}
GPU_REFERENCE: dict[str, dict[str, Any]] = {
    "batched_matmul": {"batch": 512, "m": 256, "n": 256, "k": 256},
    "solve": {"n": 4096, "nrhs": 1},
    "cholesky": {"n": 4096},
    "qr": {"m": 8192, "n": 2048},
    "svd": {"m": 4096, "n": 1024},
    "eigh": {"n": 2048},
    "lstsq": {"m": 16384, "n": 1024},
    "fft": {"n": 1 << 24},
    "kmeans": {"samples": 1_000_000, "features": 64, "clusters": 64, "iterations": 5},
    "train_linear": {"samples": 200_000, "features": 512, "epochs": 1, "batch_size": 1024},
    "train_mlp": {"samples": 200_000, "features": 512, "hidden": [2048, 2048], "classes": 100, "epochs": 1,
                  "batch_size": 1024},
}


def measure(op: str, params: dict[str, Any], placement: str, threads: int | None,
            gpu_ids: list[int] | None = None) -> OpBenchmark:
    from orchestrator.kernels.harness import execute

    task = {"op": op, "params": params, "dtype": "float32", "repeats": 3, "warmup": 1,
            "data": "device" if placement != "cpu" else "host", "placement": placement, "seed": 0, "threads": threads}
    result = execute(task, gpu_ids)
    return OpBenchmark(params=params, dtype="float32", data=task["data"], measured_s=result["measured_s"])
