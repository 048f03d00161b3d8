"""What runs on a worker: pick this task's GPUs from the worker's pool, execute, say where."""

from __future__ import annotations

import threading
from typing import Any

from orchestrator.kernels.harness import execute

_POOL_LOCK = threading.Lock()
_FREE_GPUS: list[int] | None = None


def _take_gpus(count: int) -> list[int]:
    """Distinct CUDA ordinals for concurrent tasks of one multi-GPU worker."""
    global _FREE_GPUS
    from orchestrator.backends.base import local_gpu_count

    with _POOL_LOCK:
        if _FREE_GPUS is None:
            _FREE_GPUS = list(range(local_gpu_count()))
        if len(_FREE_GPUS) < count:
            raise RuntimeError(f"task needs {count} GPUs; {len(_FREE_GPUS)} free on this worker")
        taken, _FREE_GPUS[:] = _FREE_GPUS[:count], _FREE_GPUS[count:]
        return taken


def _give_back(ids: list[int]) -> None:
    with _POOL_LOCK:
        assert _FREE_GPUS is not None
        _FREE_GPUS.extend(ids)


def run_task(task: dict[str, Any], gpus: int, identity: str) -> dict[str, Any]:
    ids = _take_gpus(gpus) if gpus else []
    try:
        result = execute(task, ids or None)
    finally:
        if ids:
            _give_back(ids)
    result["worker"] = identity
    return result


ATTEMPT_TOPIC = "orch-attempt"


def run_on_dask(task: dict[str, Any], gpus: int) -> dict[str, Any]:
    from distributed import get_worker

    worker = get_worker()
    # One event per execution: the scheduler re-runs a task whose worker died, and the client
    # counts these to report every attempt.
    worker.log_event(ATTEMPT_TOPIC, {"key": worker.get_current_task(), "worker": worker.address})
    return run_task(task, gpus, worker.address)


def run_on_ray(task: dict[str, Any], gpus: int) -> dict[str, Any]:
    import os

    import ray

    context = ray.get_runtime_context()
    # Ray sets CUDA_VISIBLE_DEVICES to this task's GPUs: ordinals 0..gpus-1 are its own.
    result = execute(task, list(range(gpus)) or None)
    result["worker"] = f"ray://{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}/pid{os.getpid()}"
    return result
