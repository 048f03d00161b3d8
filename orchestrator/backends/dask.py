"""Dask distributed: an embedded cluster on 127.0.0.1 (the default) or an existing scheduler.

Embedded: one CPU worker process per core (resource `cpu`), each running one job at a time; a
job holds as many of the host's cores as it runs threads (cores.py), so one-thread jobs run side
by side and a job on every core runs alone; and, where GPUs exist, one worker process per GPU (resource `gpu` = 1, CUDA_VISIBLE_DEVICES its
own GPU first), as dask-cuda's LocalCUDACluster makes them: its worker spec where dask-cuda
imports, the same shape from plain Nannies where it does not. A job on several GPUs is a gang
of those workers (gang.py). Every listener, dashboards included, is bound to 127.0.0.1. An
existing cluster (`tcp://...`, `tls://...`) is left running; its GPU workers are those that
declare a `gpu` resource or see GPUs themselves (`dask cuda worker`, or ORCH_FAKE_GPUS).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from orchestrator.backends import probe
from orchestrator.backends.cores import Cores
from orchestrator.backends.gpu_workers import gpu_worker_specs
from orchestrator.backends.base import DEFAULT_RETRIES, Backend, Capacity, Outcome, failed_group, group_outcomes
from orchestrator.errors import EnvironmentUnavailable, InputError
from orchestrator.execute.task import Task
from orchestrator.placement import Placement

BATCH_WAIT_S = 0.05
# Dask's nanny exports MALLOC_TRIM_THRESHOLD_=65536 to its workers; with it glibc trims on
# every small free and PyTorch's autograd (thousands of small tensors per step) ran 2.2x slower
# here (train_mlp 50K samples: 550 ms against 250 ms). The thread-pool caps stay: orch sizes
# the pools per job.
# Dask's statistical profiler (for the dashboard's profile page) wakes every 10 ms in each worker
# and walks the running task's stack: on 2 cores it slowed every two-thread job ~3% (102 profile
# references run through the embedded cluster, four interleaved pairs: 1.04-1.08x the same
# jobs in one process with it, 1.02-1.05x without). orch times jobs; its workers go without.
# Every process of a cluster wakes on timers of its own: the event loop's health check every 20
# ms, the nanny's look at its worker's memory every 100 ms, the system monitor every 500 ms. On
# 2 cores a kernel whose threads meet at barriers (BLAS, LAPACK, FFT) loses those slices whole:
# the held-out workload ran 8% slower at the median job on the embedded cluster than in one
# process, and with these 5-9% faster than with the defaults (four interleaved pairs; 1.02x one
# process). They only watch: a blocked loop is still reported (3 s), the plan keeps to memory.
QUIET = {"distributed.admin.tick.interval": "1s", "distributed.worker.memory.monitor-interval": "1s",
         "distributed.admin.system-monitor.interval": "5s"}
# Workers import the kernels (and torch) in the background from the moment they start
# (worker.dask_setup), not during the first job and without holding up the cluster's start.
PRELOAD = ["orchestrator.backends.worker"]
# CUDA numbers GPUs fastest first unless told otherwise; NVML (the profile) by PCI bus
WORKER_ENVIRON = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1,
                  "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


class DaskBackend(Backend):
    name = "dask"
    reports_deaths = True

    def __init__(self, address: str | None = None, **options: Any) -> None:
        super().__init__(address, **options)
        self.cluster: Any = None
        self.client: Any = None
        self._futures: dict[Any, str] = {}
        self._groups: dict[str, list[str]] = {}  # group key -> its jobs' keys
        self._journals: list[str] = []  # the groups' event topics on the scheduler
        self._use_resources = True
        self._gpu_shape = ""  # how the embedded GPU workers were made
        self._gpu_pins: list[str] | None = None  # GPU workers that declare no `gpu` resource
        self._cores: Cores | None = None  # the host's cores, held per job by the embedded CPU workers
        self._environ: dict[str, str | None] = {}  # this process's variables the nannies set, as they were

    def start(self, *, cores: int, gpus: int) -> Capacity:
        from distributed import Client

        from orchestrator.backends.deaths import DeathReporter

        notes: list[str] = []
        if self.embedded:
            self._environ = {name: os.environ.get(name) for name in [*WORKER_ENVIRON, "PYTHONHASHSEED"]}
            self.cluster = self._embedded_cluster(cores, gpus)
            _restore(self._environ)
            self.client = Client(self.cluster, set_as_default=False)
        else:
            security = self._security()
            probe.dask_scheduler(self.address)  # a one-line error in seconds, not a hang
            timeout = probe.connect_timeout_s()
            try:
                self.client = probe.within(
                    2 * timeout, f"--address {self.address}: the Dask handshake",
                    lambda: Client(self.address, timeout=timeout, set_as_default=False, security=security))
            except (OSError, TimeoutError) as exc:
                raise EnvironmentUnavailable(f"--address {self.address}: scheduler unreachable ({exc})",
                                             fix="start it with `dask scheduler` or check the address") from None
            notes += self._retry_notes()
        self.client.register_plugin(DeathReporter())  # why workers die, for the failure records
        capacity = self._capacity()
        capacity.notes = notes
        return capacity

    def _security(self) -> Any:
        """Dask `Security` for a tls:// scheduler: orch's --tls-* files, else Dask's own
        distributed.comm.tls configuration; a tls:// address with neither is bad input."""
        from distributed.security import Security

        if not self.address.startswith("tls://"):
            if self.tls is not None:
                raise InputError(f"--address {self.address}: --tls-* files given for a tcp:// address",
                                 fix="use the scheduler's tls:// address")
            return None
        if self.tls is not None:
            return Security(tls_ca_file=str(self.tls.ca_file), tls_client_cert=str(self.tls.cert),
                            tls_client_key=str(self.tls.key), require_encryption=True)
        configured = Security()
        if not configured.tls_ca_file:
            raise InputError(f"--address {self.address}: a tls:// scheduler needs certificates",
                             fix="pass --tls-ca-file, --tls-cert and --tls-key (or set Dask's distributed.comm.tls)")
        return configured

    def link_warnings(self) -> list[str]:
        if self.embedded or not self.address.startswith("tcp://") or probe.is_loopback(_host(self.address)):
            return []
        return [f"--address {self.address}: tcp:// is unauthenticated and unencrypted; anyone who can reach the "
                "scheduler can run code on its workers. Use tls:// with --tls-ca-file/--tls-cert/--tls-key"]

    def _retry_notes(self) -> list[str]:
        """An existing scheduler keeps its own re-run limit; say so where --retries asks another."""
        allowed = self.client.run_on_scheduler(_allowed_failures)
        if self.retries is None or self.retries == allowed:
            return []
        return [f"--retries {self.retries}: the scheduler at {self.address} re-runs a task after a worker death up "
                f"to {allowed} times (its distributed.scheduler.allowed-failures); that limit applies"]

    def _embedded_cluster(self, cores: int, gpus: int) -> Any:
        import dask

        retries = DEFAULT_RETRIES if self.retries is None else self.retries
        with dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENVIRON,
                              "distributed.worker.profile.enabled": False, **QUIET,
                              "distributed.scheduler.allowed-failures": retries}):
            return self._spawn(cores, gpus)

    def _spawn(self, cores: int, gpus: int) -> Any:
        from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

        from orchestrator import paths

        scratch = str(paths.orch_home() / "dask-scratch")  # spill files stay in orch's own folder
        common = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
        from distributed.system import MEMORY_LIMIT

        memory = MEMORY_LIMIT  # each worker may use the whole host's, as the one worker did: the plan keeps within it
        if not gpus:
            return LocalCluster(n_workers=max(cores, 1), threads_per_worker=1, processes=True, resources={"cpu": 1},
                                preload=PRELOAD, worker_dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
                                local_directory=scratch, memory_limit=memory, **common)
        worker = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "silence_logs": logging.CRITICAL,
                  "preload": PRELOAD, "local_directory": scratch}
        specs = {f"cpu-{i}": {"cls": Nanny, "options": {**worker, "nthreads": 1, "resources": {"cpu": 1},
                                                         "memory_limit": memory, "name": f"cpu-{i}"}}
                 for i in range(max(cores, 1))}
        gpu_specs, self._gpu_shape = gpu_worker_specs(gpus, worker)
        return SpecCluster(scheduler={"cls": Scheduler, "options": common}, workers={**specs, **gpu_specs},
                           silence_logs=logging.CRITICAL)

    def _capacity(self) -> Capacity:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        if not workers:
            self.client.wait_for_workers(1, timeout=probe.connect_timeout_s())
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
        declared = {address: int(w.get("resources", {}).get("gpu", w.get("resources", {}).get("GPU", 0)))
                    for address, w in workers.items()}
        if self.embedded:
            from orchestrator.hardware.standin import fake_gpu_count

            seen, stand_in = declared, fake_gpu_count() > 0
        else:
            seen, stand_in = self._gpus_seen(workers, declared)
        # Resource restrictions cost scheduler time (no queuing, no stealing): used only where GPU
        # workers must be kept free of CPU jobs. An external cluster whose workers declare no `cpu`
        # resource takes CPU jobs anywhere.
        self._use_resources = any(declared.values()) and any("cpu" in w.get("resources", {}) for w in workers.values())
        cpu_workers = {a: w for a, w in workers.items() if not seen[a]} or workers
        cores = min((w.get("nthreads", 1) for w in cpu_workers.values()), default=1)
        hosts: dict[str, list[str]] = {}
        gpu_hosts: dict[str, list[str]] = {}
        for address in sorted(workers, key=lambda a: (workers[a].get("name") is None, str(workers[a].get("name")), a)):
            hosts.setdefault(_host(address), []).append(address)
            if seen[address]:
                gpu_hosts.setdefault(_host(address), []).append(address)
        # GPU jobs go where the GPUs are: by the `gpu` resource, else to the workers that see GPUs
        self._gpu_pins = None if any(declared.values()) else [w for members in gpu_hosts.values() for w in members]
        return Capacity(cpu_workers=len(workers), cores_per_worker=cores, gpus_per_worker=max(seen.values(), default=0),
                        workers=sorted(workers), hosts=hosts, gpu_hosts=gpu_hosts, gpu_workers=self._gpu_shape,
                        stand_in_gpus=stand_in and bool(gpu_hosts))

    def _gpus_seen(self, workers: dict[str, Any], declared: dict[str, int]) -> tuple[dict[str, int], bool]:
        """GPUs per worker of an existing cluster: those it declares (`--resources gpu=N`), else
        those it sees itself (asked once; a worker without orch installed sees none); and
        whether they are stand-ins."""
        from orchestrator.backends.worker import gpus_here

        try:
            seen = self.client.run(gpus_here)
        except Exception:  # noqa: BLE001 - a worker that cannot answer offers no GPU
            seen = {}
        counts = {address: declared[address] or int(seen.get(address, {}).get("gpus", 0)) for address in workers}
        return counts, any(answer.get("stand_in") for answer in seen.values())

    def link(self) -> dict[str, float]:
        """The network between the first two hosts as a two-rank gang's collectives see it."""
        from orchestrator.backends.gang import measure_link

        return measure_link(self.members(Placement("cpu", 0, 2)))

    def members(self, placement: Placement) -> Any:
        from orchestrator.backends.gang import DaskMembers

        capacity = self._capacity()
        if placement.device == "gpu":
            hosts = capacity.gpu_nodes(placement.gpus)
            if len(hosts) < placement.nodes:
                raise EnvironmentUnavailable(f"placement {placement}: needs {placement.gpus} one-GPU worker(s) on each "
                                             f"of {placement.nodes} node(s); the cluster has {_listed(capacity.gpu_hosts)}")
            chosen = [member for host in hosts[:placement.nodes] for member in capacity.gpu_hosts[host][:placement.gpus]]
        else:
            gpu_workers = {w for members in capacity.gpu_hosts.values() for w in members}
            per_host = [[w for w in members if w not in gpu_workers] or members for members in capacity.hosts.values()]
            if len(per_host) < placement.nodes:
                raise EnvironmentUnavailable(f"placement {placement}: needs workers on {placement.nodes} hosts; the "
                                             f"cluster has {len(per_host)}")
            chosen = [members[0] for members in per_host[:placement.nodes]]
        return DaskMembers(self.client, chosen)

    def probe(self, threads: int | None = None) -> list[dict[str, Any]]:
        from orchestrator.backends.worker import probe_here

        try:
            workers = list(self.client.scheduler_info()["workers"])
            # one worker after the other: workers sharing a host would otherwise measure each other
            return [self.client.submit(probe_here, threads, workers=[w], allow_other_workers=False, pure=False,
                                       key=f"orch-probe-{i}-{id(self)}").result(timeout=30)
                    for i, w in enumerate(workers)]
        except Exception:  # noqa: BLE001 - a worker gone at the end leaves the run's noise unmeasured there
            return []

    def ready(self) -> None:
        """The embedded workers import torch in the background (1.2 s each here); a job or probe
        beside one still importing ran 30-50x slow on 2 cores (its threads wait on each other)."""
        if self.embedded:
            from orchestrator.backends.worker import load_kernels

            self.client.run(load_kernels)

    def share_cores(self, count: int) -> None:
        """The embedded cluster's CPU workers hold cores per job (cores.py); an existing
        cluster's workers run what their threads allow."""
        from orchestrator import paths

        if self.embedded and count > 1:
            self._cores = Cores.under(paths.orch_home() / "dask-scratch", count)

    def _held(self, cores: int, gpus: int) -> tuple[Cores, int] | None:
        return (self._cores, cores) if self._cores is not None and not gpus else None

    def submit(self, key: str, task: Task, *, cores: int, gpus: int) -> None:
        from orchestrator.backends.worker import run_on_dask

        future = self.client.submit(run_on_dask, task, gpus, self._held(cores, gpus), key=key, pure=False, retries=0,
                                    **self._restrictions(gpus))
        self._futures[future] = key

    def submit_group(self, key: str, jobs: list[tuple[str, Task]], *, cores: int, gpus: int) -> None:
        from orchestrator.backends.worker import group_topic, run_group_on_dask

        future = self.client.submit(run_group_on_dask, key, jobs, gpus, self._held(cores, gpus), key=key, pure=False,
                                    retries=0, **self._restrictions(gpus))
        self._futures[future] = key
        self._groups[key] = [job_key for job_key, _ in jobs]
        self._journals.append(group_topic(key))

    def _restrictions(self, gpus: int) -> dict[str, Any]:
        if gpus and self._gpu_pins:
            return {"workers": self._gpu_pins}
        return {"resources": {"gpu": gpus} if gpus else ({"cpu": 1} if self._use_resources else None)}

    def expect(self, durations: dict[str, float]) -> None:
        """Tell the scheduler how long the tasks of each key prefix should take (orch's
        predictions), where it has measured none yet: otherwise it assumes 500 ms for an unknown
        task when it places, queues and steals. Read by each TaskPrefix as it is created."""
        self.client.run_on_scheduler(_expect_durations, durations)

    def results(self) -> Iterator[list[Outcome]]:
        from distributed import as_completed

        # with_results fetches finished results in bulk, not one round trip per future
        finished = as_completed(list(self._futures), with_results=True, raise_errors=False, loop=self.client.loop)
        for batch in finished.batches():
            outcomes: list[Outcome] = []
            for future, value in batch:
                outcomes += self._outcomes(future, value)
            yield outcomes
            # let results gather for a moment: the scheduler shares this process (and, on small
            # machines, the cores); waking for every result cost ~2 ms per job of 200 (benchmarks/)
            if self._futures:
                time.sleep(BATCH_WAIT_S)

    def _outcomes(self, future: Any, value: Any) -> list[Outcome]:
        key = self._futures.pop(future)
        group = self._groups.pop(key, None)
        if group is not None:
            if future.status == "finished":
                return group_outcomes(value)
            from orchestrator.backends.worker import as_lists, group_topic

            exc = value if isinstance(value, BaseException) else future.exception()
            journal = [as_lists(event) for _, event in self.client.get_events(group_topic(key))]
            return failed_group(group, journal, f"{type(exc).__name__}: {exc}", type(exc).__name__)
        if future.status == "finished":
            return [Outcome(key, value, failures=value.failures)]
        exc = value if isinstance(value, BaseException) else future.exception()
        failures = getattr(exc, "failures", [])
        message = str(exc) if failures else f"{type(exc).__name__}: {exc}"  # a JobFailed names the job's error
        return [Outcome(key, None, message, failures[-1]["error_type"] if failures else type(exc).__name__, failures)]

    def executions(self) -> dict[str, list[dict[str, Any]]]:
        from orchestrator.backends.worker import ATTEMPT_TOPIC

        found: dict[str, list[dict[str, Any]]] = {}
        for stamp, event in self.client.get_events(ATTEMPT_TOPIC):
            found.setdefault(event["key"], []).append({"worker": event["worker"], "time": stamp})
        return found

    def deaths(self) -> list[dict[str, Any]]:
        from orchestrator.backends.deaths import DEATH_TOPIC, describe

        return [{"worker": event["worker"], "time": event["time"], "cause": describe(event), **event}
                for _, event in self.client.get_events(DEATH_TOPIC)]

    def close(self) -> None:
        if self.client is not None:
            if self._futures:
                self.client.cancel(list(self._futures))
            if self._journals and not self.embedded:  # an embedded scheduler goes with the cluster
                with contextlib.suppress(Exception):
                    self.client.run_on_scheduler(_forget_topics, topics=self._journals)
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
            _restore(self._environ)  # and as a worker's restart left it
        if self._cores is not None:
            self._cores.remove()


def _restore(environ: dict[str, str | None]) -> None:
    """os.environ's variables as `environ` had them. A Dask nanny sets its pre-spawn-environ
    (WORKER_ENVIRON) in the process it runs in before each worker it spawns, and leaves them:
    the embedded cluster's nannies run in orch's, and every process orch started afterwards ran
    on one thread (a quick profile's float32 GEMM at 193 GFLOP/s against numpy's 345)."""
    for name, value in environ.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _expect_durations(durations: dict[str, float], dask_scheduler: Any = None) -> None:
    import dask

    known = dict(dask.config.get("distributed.scheduler.default-task-durations", {}))
    for prefix, seconds in durations.items():
        found = dask_scheduler.task_prefixes.get(prefix)
        if found is None or found.duration_average < 0:
            known[prefix] = seconds
            if found is not None:
                found.duration_average = seconds
    dask.config.set({"distributed.scheduler.default-task-durations": known})


def _forget_topics(topics: list[str], dask_scheduler: Any = None) -> None:
    """Drop the groups' journals from a long-lived scheduler's event log (two events a job:
    10 MB for 10,000 jobs). The broker has no public way to do it: a scheduler without one
    keeps them, which costs memory only."""
    found = getattr(getattr(dask_scheduler, "_broker", None), "_topics", None)
    if isinstance(found, dict):
        for topic in topics:
            found.pop(topic, None)


def _allowed_failures(dask_scheduler: Any) -> int:
    return dask_scheduler.allowed_failures


def _listed(gpu_hosts: dict[str, list[str]]) -> str:
    return ", ".join(f"{len(members)} on {host}" for host, members in gpu_hosts.items()) or "none"


def _host(address: str) -> str:
    from distributed.comm import get_address_host

    return get_address_host(address)
