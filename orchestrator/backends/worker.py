"""What runs on a worker: pick this task's GPUs from the worker's pool, execute, say where.

A job whose own code raises is re-run in place up to its `retries_on_error` (default 0); each
failure is kept (worker, error type, message) and travels back with the result, or with the
`JobFailed` that ends the job. A worker dying is the engine's business (Dask's scheduler, Ray's
`max_retries`); every execution the engine starts is logged so the client can count them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from orchestrator.kernels.harness import execute

_POOL_LOCK = threading.Lock()
_FREE_GPUS: list[int] | None = None
ATTEMPT_TOPIC = "orch-attempt"
MAX_MESSAGE = 500


class JobFailed(RuntimeError):
    """The job's own code raised on every attempt it was allowed; `failures` lists each one."""

    def __init__(self, message: str, failures: list[dict[str, Any]]) -> None:
        super().__init__(message, failures)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return self.args[1]

    def __str__(self) -> str:
        return self.args[0]


def dask_setup(worker: Any) -> None:
    """Dask preload hook, in each embedded worker process: Ctrl-C in a terminal reaches the whole
    process group; the worker leaves it to orch, which shuts the cluster down (each worker used
    to print a 30-line KeyboardInterrupt traceback)."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the process's main thread: nothing to change
        pass


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


def run_task(task: dict[str, Any], gpus: int, identity: str,
             run: Callable[[dict[str, Any], list[int] | None], dict[str, Any]] = execute) -> dict[str, Any]:
    ids = _take_gpus(gpus) if gpus else []
    failures: list[dict[str, Any]] = []
    try:
        for _ in range(1 + task.get("retries_on_error", 0)):
            try:
                result = run(task, ids or None)
            except Exception as exc:  # noqa: BLE001 - the job's failure is data; the engine never sees it
                failures.append({"worker": identity, "error_type": type(exc).__name__,
                                 "error": str(exc)[:MAX_MESSAGE]})
                continue
            result["worker"] = identity
            result["failures"] = failures
            return result
    finally:
        if ids:
            _give_back(ids)
    last = failures[-1]
    tries = f" (on each of {len(failures)} attempts)" if len(failures) > 1 else ""
    raise JobFailed(f"{last['error_type']}: {last['error']}{tries}", failures)


def run_on_dask(task: dict[str, Any], gpus: int) -> dict[str, Any]:
    from distributed import get_worker

    worker = get_worker()
    # One event per execution: the scheduler re-runs a task whose worker died, and the client
    # counts these to report every attempt.
    worker.log_event(ATTEMPT_TOPIC, {"key": worker.get_current_task(), "worker": worker.address})
    return run_task(task, gpus, worker.address)


def run_on_ray(task: dict[str, Any], gpus: int, attempt_log: Any) -> dict[str, Any]:
    import os

    import ray

    context = ray.get_runtime_context()
    identity = f"ray://{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}/pid{os.getpid()}"
    attempt_log.record.remote(task["key"], identity)  # Ray re-runs a task whose worker died
    # Ray sets CUDA_VISIBLE_DEVICES to this task's GPUs: ordinals 0..gpus-1 are its own, so no
    # pool to take them from
    return run_task(task, 0, identity, lambda t, _ids: execute(t, list(range(gpus)) or None))

