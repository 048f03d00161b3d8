"""Dask distributed: an embedded cluster on 127.0.0.1 (the default) or an existing scheduler.

Embedded: one CPU worker process running one job at a time with every core (resource `cpu`),
and, where GPUs exist, one worker holding them all (resource `gpu` = their count) that runs GPU
jobs side by side, each on its own devices. Every listener, dashboards included, is bound to
127.0.0.1. An existing cluster (`tcp://...`, `tls://...`) is left running; GPU jobs need
workers started with `--resources gpu=N`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from orchestrator.backends.base import Backend, Capacity, Outcome
from orchestrator.errors import EnvironmentUnavailable

CONNECT_TIMEOUT_S = 10
BATCH_WAIT_S = 0.05
# Dask's nanny exports MALLOC_TRIM_THRESHOLD_=65536 to its workers; with it glibc trims on
# every small free and PyTorch's autograd (thousands of small tensors per step) ran 2.2x slower
# here (train_mlp 50K samples: 550 ms against 250 ms). The thread-pool caps stay: orch sizes
# the pools per job.
# Workers import the kernels (and torch) while the cluster starts, not during the first job.
PRELOAD = ["orchestrator.backends.worker"]
WORKER_ENVIRON = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}


class DaskBackend(Backend):
    name = "dask"

    def __init__(self, address: str | None = None) -> None:
        super().__init__(address)
        self.cluster: Any = None
        self.client: Any = None
        self._futures: dict[Any, str] = {}
        self._use_resources = True

    def start(self, *, cores: int, gpus: int) -> Capacity:
        from distributed import Client

        if self.embedded:
            self.cluster = self._embedded_cluster(cores, gpus)
            self.client = Client(self.cluster, set_as_default=False)
        else:
            try:
                self.client = Client(self.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise EnvironmentUnavailable(f"--address {self.address}: scheduler unreachable ({exc})",
                                             fix="start it with `dask scheduler` or check the address") from None
        return self._capacity()

    def _embedded_cluster(self, cores: int, gpus: int) -> Any:
        import dask

        with dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENVIRON}):
            return self._spawn(cores, gpus)

    def _spawn(self, cores: int, gpus: int) -> Any:
        from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

        from orchestrator import paths

        scratch = str(paths.orch_home() / "dask-scratch")  # spill files stay in orch's own folder
        common = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
        if not gpus:
            return LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={"cpu": 1}, preload=PRELOAD,
                                worker_dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
                                local_directory=scratch, **common)
        worker = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "silence_logs": logging.CRITICAL,
                  "preload": PRELOAD, "local_directory": scratch}
        return SpecCluster(
            scheduler={"cls": Scheduler, "options": common},
            workers={"cpu": {"cls": Nanny, "options": {**worker, "nthreads": 1, "resources": {"cpu": 1}}},
                     "gpu": {"cls": Nanny, "options": {**worker, "nthreads": gpus, "resources": {"gpu": gpus}}}},
            silence_logs=logging.CRITICAL)

    def _capacity(self) -> Capacity:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        if not workers:
            self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
        gpus = max((int(w.get("resources", {}).get("gpu", w.get("resources", {}).get("GPU", 0))) for w in workers.values()),
                   default=0)
        # Resource restrictions cost scheduler time (no queuing, no stealing): used only where GPU
        # workers must be kept free of CPU jobs. An external cluster whose workers declare no `cpu`
        # resource takes CPU jobs anywhere.
        self._use_resources = gpus > 0 and any("cpu" in w.get("resources", {}) for w in workers.values())
        cores = min((w.get("nthreads", 1) for w in workers.values()), default=1)
        return Capacity(cpu_workers=len(workers), cores_per_worker=cores, gpus_per_worker=gpus,
                        workers=sorted(workers))

    def submit(self, key: str, task: dict[str, Any], *, cores: int, gpus: int) -> None:
        from orchestrator.backends.worker import run_on_dask

        resources = {"gpu": gpus} if gpus else ({"cpu": 1} if self._use_resources else None)
        future = self.client.submit(run_on_dask, task, gpus, key=key, pure=False, retries=0, resources=resources)
        self._futures[future] = key

    def results(self) -> Iterator[list[Outcome]]:
        from distributed import as_completed

        # with_results fetches finished results in bulk, not one round trip per future
        finished = as_completed(list(self._futures), with_results=True, raise_errors=False, loop=self.client.loop)
        for batch in finished.batches():
            yield [self._outcome(future, value) for future, value in batch]
            # let results gather for a moment: the scheduler shares this process (and, on small
            # machines, the cores); waking for every result cost ~2 ms per job of 200 (benchmarks/)
            time.sleep(BATCH_WAIT_S)

    def _outcome(self, future: Any, value: Any) -> Outcome:
        key = self._futures.pop(future)
        if future.status == "finished":
            return Outcome(key, value)
        exc = value if isinstance(value, BaseException) else future.exception()
        return Outcome(key, None, f"{type(exc).__name__}: {exc}", type(exc).__name__)

    def attempts(self) -> dict[str, int]:
        from orchestrator.backends.worker import ATTEMPT_TOPIC

        counts: dict[str, int] = {}
        for _, event in self.client.get_events(ATTEMPT_TOPIC):
            counts[event["key"]] = counts.get(event["key"], 0) + 1
        return counts

    def close(self) -> None:
        if self.client is not None:
            if self._futures:
                self.client.cancel(list(self._futures))
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
