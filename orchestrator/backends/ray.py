"""Ray: an embedded `ray.init()` or an existing cluster by address.

Ray's token authentication is left as Ray sets it (on by default for local clusters since
Ray 2.59). The embedded cluster listens on 127.0.0.1 only: `ray.init` turns a loopback
`_node_ip_address` into the machine's routable address (`services.resolve_ip_for_localhost`),
and Ray's servers then bind every interface; orch keeps the loopback address for the processes
it starts, and Ray (2.60) binds its GCS, raylet, agents and workers to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from orchestrator.backends import probe
from orchestrator.backends.base import DEFAULT_RETRIES, Backend, Capacity, Outcome, failed_group, group_outcomes
from orchestrator.errors import EnvironmentUnavailable
from orchestrator.execute.task import Task
from orchestrator.placement import Placement

LOOPBACK = "127.0.0.1"
GANG_READY_S = 60.0  # for a placement group to be reserved


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise EnvironmentUnavailable("--backend ray: Ray is not installed", fix='pip install "orch[ray]"') from exc
    return ray


class RayBackend(Backend):
    name = "ray"

    def __init__(self, address: str | None = None, **options: Any) -> None:
        super().__init__(address, **options)
        self._refs: dict[Any, str] = {}
        self._remotes: dict[tuple[Any, int, int], Any] = {}
        self._groups: dict[str, list[str]] = {}  # group key -> its jobs' keys
        self._temp_dir: str | None = None
        self._log: Any = None

    def start(self, *, cores: int, gpus: int) -> Capacity:
        from orchestrator.hardware.standin import fake_gpu_count

        ray = _ray()
        try:
            if self.embedded:
                # Ray's session folder holds Unix sockets (paths under ~107 bytes): a short
                # private temporary folder, removed on close, not ORCH_HOME
                self._temp_dir = tempfile.mkdtemp(prefix="orch-ray-")
                with _loopback_only(ray):
                    ray.init(num_cpus=cores, num_gpus=gpus, include_dashboard=False, _node_ip_address=LOOPBACK,
                             log_to_driver=False, configure_logging=False, _temp_dir=self._temp_dir)
            elif self.address == "auto":
                ray.init(address="auto", log_to_driver=False, configure_logging=False)
            else:
                # a GCS that answers, within the connect timeout; a loopback cluster is reached on
                # loopback (ray.init would turn 127.0.0.1 into this machine's routable address)
                host, _ = probe.ray_gcs(self.address)
                local = probe.is_loopback(host)
                with _loopback_only(ray) if local else contextlib.nullcontext():
                    ray.init(address=self.address, log_to_driver=False, configure_logging=False,
                             **({"_node_ip_address": LOOPBACK} if local else {}))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EnvironmentUnavailable(f"--address {self.address}: cannot connect to Ray ({exc})") from None
        self._log = ray.remote(num_cpus=0)(AttemptLog).remote()
        nodes = self._nodes()
        cores_per = min((int(n["Resources"].get("CPU", 1)) for n in nodes), default=1)
        # a job on several GPUs is a gang of one-GPU tasks, never one task holding them all
        gpus_per = min(1, max((int(n["Resources"].get("GPU", 0)) for n in nodes), default=0))
        hosts = {f"{n['NodeManagerAddress']}/{n['NodeID'][:8]}": [n["NodeID"]] for n in nodes}
        # a GPU task gets one of its node's GPUs (Ray sets CUDA_VISIBLE_DEVICES): each a gang member
        gpu_hosts = {f"{n['NodeManagerAddress']}/{n['NodeID'][:8]}": [f"gpu{i}" for i in range(int(n["Resources"]["GPU"]))]
                     for n in nodes if n["Resources"].get("GPU", 0) >= 1}
        return Capacity(cpu_workers=len(nodes), cores_per_worker=cores_per, gpus_per_worker=gpus_per,
                        workers=[n["NodeManagerAddress"] for n in nodes], hosts=hosts, gpu_hosts=gpu_hosts,
                        gpu_workers="one Ray task per GPU (num_gpus=1) in a placement group" if gpu_hosts else "",
                        stand_in_gpus=bool(gpu_hosts) and fake_gpu_count() > 0)

    @staticmethod
    def _nodes() -> list[dict[str, Any]]:
        """Alive Ray nodes that can run tasks (a head started with num-cpus 0 only schedules)."""
        ray = _ray()
        return [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= 1]

    def members(self, placement: Placement) -> Any:
        """A placement group holding every rank's share (one GPU and one core per GPU rank; a
        whole node's cores per CPU rank): STRICT_PACK on one node, STRICT_SPREAD for one rank
        per node, else SPREAD with each node's count checked."""
        from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

        from orchestrator.backends.gang import RayMembers

        ray = _ray()
        nodes = {n["NodeID"]: n for n in self._nodes()}
        if placement.device == "gpu":
            per_node, bundle = placement.gpus, {"CPU": 1.0, "GPU": 1.0}
        else:
            per_node, bundle = 1, {"CPU": float(min(int(n["Resources"]["CPU"]) for n in nodes.values()))}
        strategy = "STRICT_PACK" if placement.nodes == 1 else ("STRICT_SPREAD" if per_node == 1 else "SPREAD")
        bundles = [dict(bundle) for _ in range(per_node * placement.nodes)]
        group = placement_group(bundles, strategy=strategy)
        try:
            ray.get(group.ready(), timeout=GANG_READY_S)
            where = [placement_group_table(group)["bundles_to_node_id"][i] for i in range(len(bundles))]
        except Exception as exc:  # noqa: BLE001 - the cluster cannot hold the gang (now)
            remove_placement_group(group)
            raise EnvironmentUnavailable(f"placement {placement}: Ray could not reserve {len(bundles)} x {bundle} "
                                         f"({strategy}) within {GANG_READY_S:.0f} s ({type(exc).__name__})") from None
        counts = {node: where.count(node) for node in where}
        if len(counts) != placement.nodes or set(counts.values()) != {per_node}:
            remove_placement_group(group)
            raise EnvironmentUnavailable(f"placement {placement}: Ray spread the gang {sorted(counts.values())} "
                                         f"over {len(counts)} node(s)")
        hosts = [nodes[node]["NodeManagerAddress"] if node in nodes else LOOPBACK for node in where]
        names = [f"ray://{host}/{node[:8]}/bundle{i}" for i, (host, node) in enumerate(zip(hosts, where))]
        return RayMembers(ray, group, bundles, names, hosts)

    def _remote(self, function: Any, cores: int, gpus: int) -> Any:
        """One remote function per (function, resource shape), registered once."""
        shape = (function, cores if not gpus else 1, gpus)
        if shape not in self._remotes:
            # max_retries re-runs a task whose worker died (a system failure), never one whose
            # kernel raised (retry_exceptions stays off; the job's own retries_on_error apply)
            retries = DEFAULT_RETRIES if self.retries is None else self.retries
            self._remotes[shape] = _ray().remote(function).options(num_cpus=shape[1], num_gpus=gpus,
                                                                   max_retries=retries)
        return self._remotes[shape]

    def probe(self, threads: int | None = None) -> list[dict[str, Any]]:
        from orchestrator.backends.worker import probe_here

        try:
            return [_ray().get(_ray().remote(probe_here).options(num_cpus=1).remote(threads), timeout=30)]
        except Exception:  # noqa: BLE001 - no CPU free within 30 s: the run's end goes unprobed
            return []

    def submit(self, key: str, task: Task, *, cores: int, gpus: int) -> None:
        from orchestrator.backends.worker import run_on_ray

        self._refs[self._remote(run_on_ray, cores, gpus).remote(dataclasses.replace(task, key=key), gpus, self._log)] = key

    def submit_group(self, key: str, jobs: list[tuple[str, Task]], *, cores: int, gpus: int) -> None:
        from orchestrator.backends.worker import run_group_on_ray

        self._refs[self._remote(run_group_on_ray, cores, gpus).remote(key, jobs, gpus, self._log)] = key
        self._groups[key] = [job_key for job_key, _ in jobs]

    def results(self) -> Iterator[list[Outcome]]:
        ray = _ray()
        pending = list(self._refs)
        while pending:
            # everything that finishes within 50 ms comes back as one batch
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.05)
            if done:
                outcomes: list[Outcome] = []
                for ref in done:
                    outcomes += self._outcomes(ray, ref)
                yield outcomes

    def _outcomes(self, ray: Any, ref: Any) -> list[Outcome]:
        key = self._refs.pop(ref)
        group = self._groups.pop(key, None)
        try:
            value = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a task's failure is data here
            cause = getattr(exc, "cause", None) or exc
            if group is not None:
                journal = ray.get(self._log.group.remote(key))
                return failed_group(group, journal, f"{type(cause).__name__}: {cause}", type(cause).__name__)
            failures = getattr(cause, "failures", [])
            if failures:  # the job's own code raised (JobFailed)
                return [Outcome(key, None, str(cause), failures[-1]["error_type"], failures)]
            return [Outcome(key, None, f"{type(cause).__name__}: {cause}", type(cause).__name__)]
        if group is not None:
            return group_outcomes(value)
        return [Outcome(key, value, failures=value.failures)]

    def executions(self) -> dict[str, list[dict[str, Any]]]:
        ray = _ray()
        return ray.get(self._log.executions.remote()) if self._log is not None else {}

    def close(self) -> None:
        ray = _ray()
        for ref in list(self._refs):
            ray.cancel(ref, force=True)
        self._refs.clear()
        if ray.is_initialized():
            if self._log is not None:
                ray.kill(self._log)
            ray.shutdown()
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)


class AttemptLog:
    """A zero-CPU actor every execution reports to: Ray re-runs a task whose worker died without
    telling the caller, and this is how the attempts are counted."""

    def __init__(self) -> None:
        self._runs: dict[str, list[dict[str, Any]]] = {}
        self._groups: dict[str, list[dict[str, Any]]] = {}

    def record(self, key: str, worker: str) -> None:
        import time

        self._runs.setdefault(key, []).append({"worker": worker, "time": time.time()})

    def executions(self) -> dict[str, list[dict[str, Any]]]:
        return self._runs

    def journal(self, group_key: str, event: dict[str, Any]) -> None:
        """A group's start or finished job (`worker.run_group`)."""
        self._groups.setdefault(group_key, []).append(event)

    def group(self, group_key: str) -> list[dict[str, Any]]:
        return self._groups.get(group_key, [])


@contextlib.contextmanager
def _loopback_only(ray: Any) -> Iterator[None]:
    """Keep 127.0.0.1 as the node address of the cluster ray.init starts (see the module doc)."""
    from ray._private import services

    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = resolve


def loopback_cli() -> None:
    """`ray` command line with 127.0.0.1 kept as the node address (`ray start --head
    --node-ip-address=127.0.0.1` otherwise binds the machine's routable address): how the SLURM
    recipe runs a one-node Ray on loopback only. Run as `python -m orchestrator.backends.ray ARGS`."""
    ray = _ray()
    from ray.scripts.scripts import main as ray_main

    with _loopback_only(ray):
        ray_main()


if __name__ == "__main__":
    loopback_cli()

