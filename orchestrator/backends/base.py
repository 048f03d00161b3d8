"""The backend interface: start or connect to a cluster, say what it can serve, run tasks.

The base class owns the algorithm (capacity checks, submission, collection); `dask.py` and
`ray.py` say how to talk to their engine.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from orchestrator.errors import EnvironmentUnavailable
from orchestrator.execute.task import JobResult, Task
from orchestrator.placement import Placement


GANG_WAIT_S = 60.0  # for a gang's members to be back after one died (a nanny restarts its worker)
MAX_ERROR = 500
DEFAULT_RETRIES = 3  # re-runs after a worker dies, as Dask's distributed.scheduler.allowed-failures
# what engines raise when they give up on a task because its workers kept dying
SYSTEM_ERRORS = frozenset({"KilledWorker", "WorkerCrashedError", "OutOfMemoryError", "NodeDiedError",
                           "ObjectLostError", "OwnerDiedError"})


@dataclass(frozen=True)
class TLSFiles:
    """Client certificates for a tls:// Dask scheduler (Dask's `Security`)."""

    ca_file: str
    cert: str
    key: str


@dataclass
class Capacity:
    """What the cluster can serve: CPU workers (cores each) and the most GPUs one worker has."""

    cpu_workers: int
    cores_per_worker: int
    gpus_per_worker: int = 0
    workers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said to the user before anything runs
    hosts: dict[str, list[str]] = field(default_factory=dict)  # node (host) -> its workers
    # node (host) -> its workers that own one GPU each, in GPU order: a gang's members
    gpu_hosts: dict[str, list[str]] = field(default_factory=dict)
    gpu_workers: str = ""  # how the GPU workers were made, said with the run ("dask-cuda ...")
    stand_in_gpus: bool = False  # the GPU workers' GPUs are CPU stand-ins (ORCH_FAKE_GPUS)

    @property
    def nodes(self) -> int:
        return max(len(self.hosts), 1)

    @property
    def gpus_per_node(self) -> int:
        """The most GPUs one job can hold on one node: a gang of one-GPU workers, or the GPUs
        of one worker (a worker started with `--resources gpu=N` holds N)."""
        return max([self.gpus_per_worker, *(len(members) for members in self.gpu_hosts.values())])

    def gpu_nodes(self, gpus: int) -> list[str]:
        """The nodes with at least `gpus` one-GPU workers."""
        return [host for host, members in self.gpu_hosts.items() if len(members) >= gpus]


@dataclass
class Outcome:
    """One finished task: its result, or the error it raised. `failures` are the job's own
    failed tries inside its last execution (`retries_on_error`)."""

    key: str
    result: JobResult | None
    error: str | None = None
    error_type: str | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    # every execution of the job ({"worker", "time"}) where its group said so; else the engine's log
    runs: list[dict[str, Any]] | None = None

    @property
    def system(self) -> bool:
        """The engine gave up because the task's workers died, not because the job raised."""
        return self.result is None and self.error_type in SYSTEM_ERRORS


@dataclass
class History:
    """Every execution of one task in this run and why each failed one failed."""

    attempts: int
    failures: list[dict[str, Any]]


class Backend(abc.ABC):
    name: ClassVar[str]
    reports_deaths: ClassVar[bool] = False  # `deaths()` says why workers died (Dask's nanny plugin)

    def __init__(self, address: str | None = None, *, retries: int | None = None, tls: Any = None) -> None:
        self.address = address
        self.retries = retries  # None: the engine's default (DEFAULT_RETRIES, or an existing scheduler's own)
        self.tls = tls

    @property
    def embedded(self) -> bool:
        return self.address is None

    @abc.abstractmethod
    def start(self, *, cores: int, gpus: int) -> Capacity:
        """Start an embedded cluster (bound to 127.0.0.1) or connect to `address`."""

    def link_warnings(self) -> list[str]:
        """What the user should know about the link to `address` before orch connects."""
        return []

    @abc.abstractmethod
    def submit(self, key: str, task: Task, *, cores: int, gpus: int) -> None:
        """Queue one task; `cores`/`gpus` are what it needs on its worker."""

    @abc.abstractmethod
    def results(self) -> Iterator[list[Outcome]]:
        """Finished tasks in completion order, in batches of those that finished together (so
        the caller commits each batch in one transaction), until every task is back."""

    @abc.abstractmethod
    def submit_group(self, key: str, jobs: list[tuple[str, Task]], *, cores: int, gpus: int) -> None:
        """Queue tiny jobs ([(job key, task)]) as one engine task; `results` yields one Outcome
        per job, never one for the group (`worker.run_group`)."""

    def expect(self, durations: dict[str, float]) -> None:
        """What each key prefix's tasks are predicted to take, for engines that schedule by it."""

    def ready(self) -> None:
        """Wait until the workers run jobs at their speed, before the first is submitted."""

    def share_cores(self, count: int) -> None:
        """CPU jobs share `count` cores of the host, each holding the `cores` it was submitted
        with: for engines that do not account cores themselves (Ray does, by `num_cpus`)."""

    def probe(self, threads: int | None = None) -> list[dict[str, Any]]:
        """The sentinel probed on the CPU where the jobs ran, now (the run's end): one probe per
        worker (Dask) or one where a task lands (Ray); [] where it cannot be asked."""
        return []

    def executions(self) -> dict[str, list[dict[str, Any]]]:
        """Every execution the engine started, per task key: [{"worker": ..., "time": ...}], in order."""
        return {}

    def deaths(self) -> list[dict[str, Any]]:
        """Worker processes that died during the run: {"worker", "time", "cause"}."""
        return []

    def history(self, outcome: Outcome, executions: dict[str, list[dict[str, Any]]],
                deaths: list[dict[str, Any]]) -> History:
        """Attempts and failures of one task: executions lost with their worker (matched to the
        death that ended it), then the job's own failed tries in its last execution."""
        runs = outcome.runs or executions.get(outcome.key) or [{"worker": None, "time": 0.0}]
        lost = runs if outcome.system else runs[:-1]
        failures = [{"worker": run["worker"], "error_type": "WorkerDied", "error": _cause(run, deaths)} for run in lost]
        if outcome.system:
            return History(len(runs), failures)
        last_tries = len(outcome.failures) + (1 if outcome.result is not None else 0)
        return History(len(runs) - 1 + max(last_tries, 1), failures + outcome.failures)

    def members(self, placement: Placement) -> Any:
        """The workers a gang of `placement` runs on (`gang.Members`), chosen now; raises
        EnvironmentUnavailable where the cluster has too few."""
        raise NotImplementedError(f"gangs are not built for {self.name}")

    def run_gang(self, key: str, task: Task, placement: Placement) -> Outcome:
        """Execute a job that holds several workers at once (`gpu:N`, `gpu:N@K`, `cpu@K`), blocking.
        A gang whose member dies is run again whole, on members chosen again (the engine's
        re-run limit: --retries); a rank's own error fails the job with that cause."""
        from orchestrator.backends import gang

        retries = DEFAULT_RETRIES if self.retries is None else self.retries
        failures: list[dict[str, Any]] = []
        for attempt in range(retries + 1):
            try:
                members = self._members_within(placement, GANG_WAIT_S if failures else 0.0)
            except EnvironmentUnavailable as exc:
                if failures:  # the member that died never came back
                    return Outcome(key, None, f"WorkerDied: {failures[-1]['error']}; no replacement within "
                                              f"{GANG_WAIT_S:.0f} s ({exc})", "WorkerDied", failures)
                return Outcome(key, None, f"GangUnavailable: {exc}", "GangUnavailable", failures)
            try:
                return Outcome(key, gang.execute(members, task), failures=failures)
            except Exception as exc:  # noqa: BLE001 - a job's failure is data
                lost = exc if isinstance(exc, gang.MemberLost) else _lost_member(members, exc)
                if lost is None:
                    cause = f"{type(exc).__name__}: {str(exc)[:MAX_ERROR]}"
                    return Outcome(key, None, cause, type(exc).__name__, failures)
                failures.append({"worker": lost.worker, "error_type": "WorkerDied", "error": str(lost)[:MAX_ERROR]})
            finally:
                members.close()
        return Outcome(key, None, f"WorkerDied: a member of its gang died on each of {retries + 1} attempts; last "
                                  f"{failures[-1]['error']}", "WorkerDied", failures)

    def _members_within(self, placement: Placement, wait_s: float) -> Any:
        """Members for `placement`, waiting up to `wait_s` for the cluster to have them (a nanny
        restarting a dead worker, a Ray node coming back)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self.members(placement)
            except EnvironmentUnavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    @abc.abstractmethod
    def close(self) -> None:
        """Cancel what is left; shut an embedded cluster down, leave an external one running."""


def group_outcomes(entries: list[dict[str, Any]]) -> list[Outcome]:
    """One Outcome per job from what a group returned (or journalled)."""
    found = []
    for entry in entries:
        if entry["result"] is not None:
            result = JobResult.from_dict(entry["result"])
            found.append(Outcome(entry["key"], result, failures=result.failures,
                                 runs=entry["runs"]))
        else:
            found.append(Outcome(entry["key"], None, entry["error"], entry["error_type"], entry["failures"],
                                 runs=entry["runs"]))
    return found


def read_journal(journal: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """A group's journal read back: the entries of its finished jobs by key, and the executions
    ({"worker", "time"}) of the jobs started but never finished (each lost with its worker)."""
    finished = {event["key"]: event["entry"] for event in journal if event["kind"] == "done"}
    lost: dict[str, list[dict[str, Any]]] = {}
    for event in journal:
        if event["kind"] == "start" and event["key"] not in finished:
            lost.setdefault(event["key"], []).append({"worker": event["worker"], "time": event["time"]})
    return finished, lost


def failed_group(job_keys: list[str], journal: list[dict[str, Any]], error: str, error_type: str) -> list[Outcome]:
    """The engine gave up on a group (its workers kept dying): the jobs it finished keep their
    results (from the journal); those it started fail with the group's error and their lost
    executions; those it never started fail saying so."""
    finished, starts = read_journal(journal)
    found = []
    for key in job_keys:
        if key in finished:
            found.extend(group_outcomes([finished[key]]))
        elif key in starts:
            found.append(Outcome(key, None, error, error_type, runs=starts[key]))
        else:
            found.append(Outcome(key, None, f"GroupFailed: not run: the task holding it and other tiny jobs "
                                            f"failed before reaching it ({error})", "GroupFailed"))
    return found


def _cause(run: dict[str, Any], deaths: list[dict[str, Any]]) -> str:
    """What ended an execution: the first death of its worker after it started."""
    for death in deaths:
        if death["worker"] == run["worker"] and death["time"] >= run["time"] - 1.0:
            return f"worker died: {death['cause']}"
    return "worker lost (no exit report: its nanny or node went with it)"


def _lost_member(members: Any, error: Exception) -> Any:
    """The member whose death `error` followed (its peers' collectives fail when it goes), if
    one left the cluster within a moment; else None: the job's own error."""
    from orchestrator.backends import gang

    deadline = time.monotonic() + gang.MEMBER_GONE_WAIT_S
    while True:
        gone = members.gone()
        if gone:
            return gang.MemberLost(gone[0], f"{type(error).__name__} on its peers: {str(error)[:MAX_ERROR]}")
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def local_gpu_count() -> int:
    """GPUs this machine can run on (ORCH_FAKE_GPUS stands CPU devices in, for tests).

    NVML answers first: where it sees no NVIDIA GPU (or no driver), CUDA has none either, and
    orch's own process never imports torch (1.2 s of a 4 s run of 200 small jobs here)."""
    from orchestrator.hardware.nvml import visible_gpu_count
    from orchestrator.hardware.standin import fake_gpu_count

    if fake_gpu_count():
        return fake_gpu_count()

    if visible_gpu_count() == 0:
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
