"""What runs on a worker: pick this task's GPUs from the worker's pool, execute, say where.

A job whose own code raises is re-run in place up to its `retries_on_error` (default 0); each
failure is kept (worker, error type, message) and travels back with the result, or with the
`JobFailed` that ends the job. A worker dying is the engine's business (Dask's scheduler, Ray's
`max_retries`); every execution the engine starts is logged so the client can count them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrator.execute.task import JobResult, Task

if TYPE_CHECKING:
    from orchestrator.backends.cores import Cores

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
    # The kernels (torch: 1.2 s here) load while the cluster finishes starting and orch plans;
    # the first task that needs them waits on Python's import lock for the rest.
    threading.Thread(target=load_kernels, name="orch-load-kernels", daemon=True).start()


def load_kernels() -> None:
    """Import the kernels (torch) here, or wait for the background import to finish."""
    import orchestrator.execute.harness  # noqa: F401


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


def run_task(task: Task, gpus: int, identity: str,
             run: Callable[[Task, list[int] | None], JobResult] | None = None) -> JobResult:
    if run is None:  # imported here: the client pickles this module's functions without torch
        from orchestrator.execute.harness import execute as run
    ids = _take_gpus(gpus) if gpus else []
    failures: list[dict[str, Any]] = []
    try:
        for _ in range(1 + task.retries_on_error):
            try:
                result = run(task, ids or None)
            except Exception as exc:  # noqa: BLE001 - the job's failure is data; the engine never sees it
                failures.append({"worker": identity, "error_type": type(exc).__name__,
                                 "error": str(exc)[:MAX_MESSAGE]})
                continue
            return dataclasses.replace(result, workers=[identity], failures=failures)
    finally:
        if ids:
            _give_back(ids)
    last = failures[-1]
    tries = f" (on each of {len(failures)} attempts)" if len(failures) > 1 else ""
    raise JobFailed(f"{last['error_type']}: {last['error']}{tries}", failures)


def probe_here(threads: int | None = None) -> dict[str, Any]:
    """The sentinel on this process's CPU, probed now, with the thread pools a job of `threads`
    cores gets (run as a task, in a task's thread, as the jobs' probes are)."""
    import torch

    from orchestrator.execute import sentinel
    from orchestrator.execute.harness import _set_threads

    _set_threads(threads)
    return sentinel.latest(torch.device("cpu"), force=True)


def gang_rank(task: Task, rank: int, world: int, init_method: str) -> dict[str, Any]:
    """One rank of a gang (kernels/gang.py), imported here: the client pickles this module's
    functions without importing torch."""
    from orchestrator.execute.gang import rank_main

    return rank_main(task, rank, world, init_method)


def gang_link(rank: int, world: int, init_method: str) -> dict[str, float]:
    """One rank of a link measurement (kernels/gang.py:link_rank)."""
    from orchestrator.execute.gang import link_rank

    return link_rank(rank, world, init_method)


def gpus_here() -> dict[str, Any]:
    """The GPUs this worker process sees, and whether they are stand-ins (ORCH_FAKE_GPUS)."""
    from orchestrator.backends.base import local_gpu_count
    from orchestrator.hardware.standin import fake_gpu_count

    return {"gpus": local_gpu_count(), "stand_in": fake_gpu_count() > 0}


def free_port(host: str) -> int:
    """A port free on this worker's host, for a gang's rendezvous (rank 0 listens there)."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _holding(held: tuple[Cores, int] | None, worker: Any) -> contextlib.AbstractContextManager[Any]:
    """The cores a CPU task holds on the embedded cluster's host while it runs (cores.py)."""
    if held is None:
        return contextlib.nullcontext()
    from orchestrator.backends.cores import slot_of

    cores, wanted = held
    return cores.held(wanted, slot_of(worker.name))


def run_on_dask(task: Task, gpus: int, held: tuple[Cores, int] | None = None) -> JobResult:
    from distributed import get_worker

    worker = get_worker()
    # One event per execution: the scheduler re-runs a task whose worker died, and the client
    # counts these to report every attempt.
    worker.log_event(ATTEMPT_TOPIC, {"key": worker.get_current_task(), "worker": worker.address})
    with _holding(held, worker) as cores:
        return dataclasses.replace(run_task(task, gpus, worker.address), cores=cores)


def _on_ray(gpus: int) -> tuple[str, Callable[[dict[str, Any], list[int] | None], dict[str, Any]]]:
    """This Ray worker's identity, and how it executes a job: Ray sets CUDA_VISIBLE_DEVICES to
    the task's GPUs, so ordinals 0..gpus-1 are its own and there is no pool to take them from."""
    import os

    import ray

    from orchestrator.execute.harness import execute

    context = ray.get_runtime_context()
    identity = f"ray://{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}/pid{os.getpid()}"
    return identity, lambda task, _ids: execute(task, list(range(gpus)) or None)


def run_on_ray(task: Task, gpus: int, attempt_log: Any) -> JobResult:
    identity, run = _on_ray(gpus)
    attempt_log.record.remote(task.key, identity)  # Ray re-runs a task whose worker died
    return run_task(task, 0, identity, run)


# --- groups: many tiny jobs in one engine task ----------------------------------------------
#
# A group runs its jobs one after the other and journals each start and each finished job
# (`Journal`: Dask scheduler events, or Ray's attempt-log actor). When the worker dies, the
# engine re-runs the group; the new execution reads the journal, returns the jobs finished
# before the death as they were, and runs only the rest. A job started but never finished lost
# an execution with that worker: it travels in the job's `runs`, and the client matches it to
# the death that ended it.


class Journal:
    """Where a group's executions leave their marks: `write` one event, `read` all so far."""

    def write(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def read(self) -> list[dict[str, Any]]:
        raise NotImplementedError


def as_lists(value: Any) -> Any:
    """An event as it was logged: msgpack hands lists back as tuples."""
    if isinstance(value, dict):
        return {k: as_lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_lists(v) for v in value]
    return value


def group_topic(group_key: str) -> str:
    return f"orch-group/{group_key}"


def run_group(group: str, jobs: list[tuple[str, Task]], gpus: int, identity: str, journal: Journal,
              run: Callable[[Task, list[int] | None], JobResult] | None = None) -> list[dict[str, Any]]:
    """Run `jobs` ([(job key, task)]) in order; one entry per job: {"key", "result"} or {"key",
    "error", "error_type", "failures"}, with "runs" (every execution: worker, time). A job that
    fails never stops its neighbours."""
    import time

    from orchestrator.backends.base import read_journal

    finished, lost = read_journal(journal.read())
    entries = []
    for key, task in jobs:
        if key in finished:  # done before a worker died: kept, never run again
            entries.append(finished[key])
            continue
        started = {"worker": identity, "time": time.time()}
        journal.write({"kind": "start", "key": key, **started})
        try:
            entry = {"key": key, "result": dataclasses.replace(run_task(task, gpus, identity, run), group=group).as_dict()}
        except JobFailed as exc:
            entry = {"key": key, "result": None, "error": str(exc), "error_type": exc.failures[-1]["error_type"],
                     "failures": exc.failures}
        except Exception as exc:  # noqa: BLE001 - outside the job's code (a GPU pool refusal): still its own
            entry = {"key": key, "result": None, "error": f"{type(exc).__name__}: {str(exc)[:MAX_MESSAGE]}",
                     "error_type": type(exc).__name__, "failures": []}
        entry["runs"] = lost.get(key, []) + [started]
        journal.write({"kind": "done", "key": key, "entry": entry})
        entries.append(entry)
    return entries


class DaskJournal(Journal):
    """Events on the scheduler under the group's own topic (worker.log_event is batched and
    costs microseconds; reading is one round trip to the scheduler, once per execution)."""

    def __init__(self, worker: Any, group_key: str) -> None:
        self.worker, self.topic = worker, group_topic(group_key)

    def write(self, event: dict[str, Any]) -> None:
        self.worker.log_event(self.topic, event)

    def read(self) -> list[dict[str, Any]]:
        from distributed.utils import sync

        found = sync(self.worker.loop, self.worker.scheduler.events, topic=self.topic)
        return [as_lists(event) for _, event in found]


def run_group_on_dask(group_key: str, jobs: list[tuple[str, Task]], gpus: int,
                      held: tuple[Cores, int] | None = None) -> list[dict[str, Any]]:
    from distributed import get_worker

    worker = get_worker()
    with _holding(held, worker) as cores:
        entries = run_group(group_key, jobs, gpus, worker.address, DaskJournal(worker, group_key))
    for entry in entries:
        if entry.get("result") and cores is not None:
            entry["result"]["cores"] = cores
    return entries


class RayJournal(Journal):
    def __init__(self, log: Any, group_key: str) -> None:
        self.log, self.key = log, group_key

    def write(self, event: dict[str, Any]) -> None:
        self.log.journal.remote(self.key, event)

    def read(self) -> list[dict[str, Any]]:
        import ray

        return ray.get(self.log.group.remote(self.key))


def run_group_on_ray(group_key: str, jobs: list[tuple[str, Task]], gpus: int,
                     attempt_log: Any) -> list[dict[str, Any]]:
    identity, run = _on_ray(gpus)
    return run_group(group_key, jobs, 0, identity, RayJournal(attempt_log, group_key), run)
