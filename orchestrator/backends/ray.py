"""Ray: an embedded `ray.init()` or an existing cluster by address.

Ray's token authentication is left as Ray sets it (on by default for local clusters since
Ray 2.59). Known gap: Ray 2.60 ignores `_node_ip_address="127.0.0.1"` for a local cluster here,
and its raylet, GCS and workers listen on every interface (docs/running.md).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from orchestrator.backends.base import Backend, Capacity, Outcome
from orchestrator.errors import EnvironmentUnavailable


SYSTEM_RETRIES = 3  # as Dask's distributed.scheduler.allowed-failures


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise EnvironmentUnavailable("--backend ray: Ray is not installed", fix='pip install "orch[ray]"') from exc
    return ray


class RayBackend(Backend):
    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        super().__init__(address)
        self._refs: dict[Any, str] = {}
        self._remotes: dict[tuple[int, int], Any] = {}
        self._temp_dir: str | None = None

    def start(self, *, cores: int, gpus: int) -> Capacity:
        ray = _ray()
        try:
            if self.embedded:
                # Ray's session folder holds Unix sockets (paths under ~107 bytes): a short
                # private temporary folder, removed on close, not ORCH_HOME
                self._temp_dir = tempfile.mkdtemp(prefix="orch-ray-")
                ray.init(num_cpus=cores, num_gpus=gpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False, configure_logging=False, _temp_dir=self._temp_dir)
            else:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EnvironmentUnavailable(f"--address {self.address}: cannot connect to Ray ({exc})") from None
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cores_per = min((int(n["Resources"].get("CPU", 1)) for n in nodes), default=1)
        gpus_per = max((int(n["Resources"].get("GPU", 0)) for n in nodes), default=0)
        return Capacity(cpu_workers=len(nodes), cores_per_worker=cores_per, gpus_per_worker=gpus_per,
                        workers=[n["NodeManagerAddress"] for n in nodes])

    def submit(self, key: str, task: dict[str, Any], *, cores: int, gpus: int) -> None:
        ray = _ray()
        shape = (cores if not gpus else 1, gpus)
        if shape not in self._remotes:  # one remote function per resource shape, registered once
            from orchestrator.backends.worker import run_on_ray

            # max_retries re-runs a task whose worker died (a system failure), never one whose
            # kernel raised (retry_exceptions stays off)
            self._remotes[shape] = ray.remote(run_on_ray).options(num_cpus=shape[0], num_gpus=gpus,
                                                                  max_retries=SYSTEM_RETRIES)
        self._refs[self._remotes[shape].remote(task, gpus)] = key

    def results(self) -> Iterator[list[Outcome]]:
        ray = _ray()
        pending = list(self._refs)
        while pending:
            # everything that finishes within 50 ms comes back as one batch
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.05)
            if done:
                yield [self._outcome(ray, ref) for ref in done]

    def _outcome(self, ray: Any, ref: Any) -> Outcome:
        key = self._refs.pop(ref)
        try:
            return Outcome(key, ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - a task's failure is data here
            cause = getattr(exc, "cause", None) or exc
            return Outcome(key, None, f"{type(cause).__name__}: {cause}", type(cause).__name__)

    def close(self) -> None:
        ray = _ray()
        for ref in list(self._refs):
            ray.cancel(ref, force=True)
        self._refs.clear()
        if ray.is_initialized():
            ray.shutdown()
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
