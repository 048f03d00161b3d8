"""`orch profile --address`: what an existing Dask cluster has, host by host, and the network
between two of its hosts as a gang's collectives cross it, saved for `orch plan/run --address`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.backends.dask import DaskBackend
from orchestrator.errors import EnvironmentUnavailable
from orchestrator.profile import network


def survey(address: str) -> tuple[dict[str, Any], Path]:
    """{"address", "hosts": {host: workers, threads, cores, memory_bytes, gpus}, "network": the
    measured link}, and where the link was saved."""
    engine = DaskBackend(address)
    capacity = engine.start(cores=0, gpus=0)
    try:
        if capacity.nodes < 2:
            raise EnvironmentUnavailable(f"--address {address}: every worker is on one host "
                                         f"({', '.join(capacity.hosts)}); no network between nodes to measure")
        between = list(capacity.hosts)[:2]
        measured = {**network.measured(engine.link(), between), "address": address}
        workers = engine.client.run(_host_resources)
    finally:
        engine.close()
    path = network.save(address, measured)
    hosts: dict[str, dict[str, Any]] = {}
    for worker, info in workers.items():
        host = next(h for h, members in capacity.hosts.items() if worker in members)
        entry = hosts.setdefault(host, {"workers": 0, "threads": 0, "memory_bytes": info["memory_bytes"],
                                        "cores": info["cores"], "gpus": info["gpus"]})
        entry["workers"] += 1
        entry["threads"] += info["threads"]
    return {"address": address, "hosts": hosts, "network": measured}, path


def _host_resources(dask_worker: Any = None) -> dict[str, Any]:
    """Run on every worker: its threads, and its host's cores, memory and GPUs."""
    import os

    import psutil

    from orchestrator.backends.base import local_gpu_count

    return {"threads": dask_worker.state.nthreads if dask_worker else 1, "cores": os.cpu_count(),
            "memory_bytes": psutil.virtual_memory().total, "gpus": local_gpu_count()}
