"""The embedded Dask cluster's GPU workers: one per GPU, as dask-cuda's LocalCUDACluster makes
them (its worker spec where dask-cuda imports, the same shape from plain Nannies where it does
not)."""

from __future__ import annotations

from typing import Any


def gpu_worker_specs(gpus: int, worker: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """One Nanny per GPU, named gpu-I, resource `gpu` = 1, its own GPU first in
    CUDA_VISIBLE_DEVICES: dask-cuda's worker spec (with its CPU affinity) where dask-cuda
    imports, else plain Nannies; and which of the two was used. Under ORCH_FAKE_GPUS=N each
    worker presents one stand-in GPU (ORCH_FAKE_GPUS=1)."""
    import os

    from distributed import Nanny

    fake = bool(os.environ.get("ORCH_FAKE_GPUS"))
    base: dict[int, dict[str, Any]] = {}
    shape = "one plain Dask worker per GPU (CUDA_VISIBLE_DEVICES; dask-cuda is not installed)"
    if fake:
        shape = f"one Dask worker per stand-in GPU (ORCH_FAKE_GPUS={gpus})"
    else:
        try:
            from dask_cuda.worker_spec import worker_spec

            base = worker_spec(dashboard_address="127.0.0.1:0", threads_per_worker=1,
                               CUDA_VISIBLE_DEVICES=list(range(gpus)))
            from importlib import metadata

            shape = f"dask-cuda {metadata.version('dask-cuda')} worker spec: one worker per GPU, with CPU affinity"
        except Exception as exc:  # noqa: BLE001 - dask-cuda absent, or unable to start here
            if not isinstance(exc, ImportError):
                shape = f"one plain Dask worker per GPU (CUDA_VISIBLE_DEVICES; dask-cuda failed: {type(exc).__name__})"
    specs = {}
    for index in range(gpus):
        spec = base.get(index, {"cls": Nanny, "options": {}})
        options = {k: v for k, v in spec.get("options", {}).items() if k not in ("interface", "protocol")}
        order = [index, *(i for i in range(gpus) if i != index)]
        env = {**options.get("env", {}), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        env.update({"ORCH_FAKE_GPUS": "1"} if fake else {"CUDA_VISIBLE_DEVICES": env.get("CUDA_VISIBLE_DEVICES")
                                                         or ",".join(map(str, order))})
        options.update({**worker, "nthreads": 1, "resources": {"gpu": 1}, "env": env, "name": f"gpu-{index}"})
        specs[f"gpu-{index}"] = {"cls": spec.get("cls", Nanny), "options": options}
    return specs, shape
