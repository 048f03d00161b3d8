"""Drive a multi-node job (`cpu@K`) from the client: one worker per node, each holding its shard
of the inputs; every execution is timed from submitting the shards' work to having every
partial result back (for kmeans, every Lloyd iteration's partial sums go to the client and the
new centroids back out; training runs torch.distributed across the nodes and times itself
between barriers). `measured_s` is the median over `repeats` after `warmup`, as for
single-node jobs. The engine is reached through a `Nodes` adapter: Dask pins a task to a worker
(`workers=[addr]`), Ray to a node (`NodeAffinitySchedulingStrategy`)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any, Protocol

import torch

from orchestrator.kernels import KERNELS
from orchestrator.kernels.harness import timed
from orchestrator.kernels.shards import (
    TRAINING,
    check_shard,
    free_port,
    kmeans_partials,
    make_shard,
    run_shard,
    shard_init,
    train_distributed,
)


class Nodes(Protocol):
    names: list[str]     # what the job's `workers` will list, one per node
    hosts: list[str]     # each node's network address (the training rendezvous listens on the first)

    def submit(self, node: int, fn: Callable[..., Any], *args: Any) -> Any: ...
    def gather(self, handles: list[Any]) -> list[Any]: ...
    def release(self, handles: list[Any]) -> None: ...


class DaskNodes:
    def __init__(self, client: Any, workers: list[str]) -> None:
        from distributed.comm import get_address_host

        self.client, self.names = client, workers
        self.hosts = [get_address_host(w) for w in workers]

    def submit(self, node: int, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args, workers=[self.names[node]], allow_other_workers=False, pure=False)

    def gather(self, handles: list[Any]) -> list[Any]:
        return self.client.gather(handles)

    def release(self, handles: list[Any]) -> None:
        self.client.cancel(handles)


class RayNodes:
    def __init__(self, ray: Any, nodes: list[dict[str, Any]], cores: int) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        self.names = [f"ray://{n['NodeManagerAddress']}/{n['NodeID'][:8]}" for n in nodes]
        self.hosts = [n["NodeManagerAddress"] for n in nodes]
        self._pins = [NodeAffinitySchedulingStrategy(n["NodeID"], soft=False) for n in nodes]
        self._cores = cores
        self._remotes: dict[tuple[Callable[..., Any], int], Any] = {}

    def submit(self, node: int, fn: Callable[..., Any], *args: Any) -> Any:
        if (fn, node) not in self._remotes:
            self._remotes[(fn, node)] = self.ray.remote(fn).options(num_cpus=self._cores, max_retries=0,
                                                                  scheduling_strategy=self._pins[node])
        return self._remotes[(fn, node)].remote(*args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return self.ray.get(handles)

    def release(self, handles: list[Any]) -> None:
        del handles  # Ray frees an object once no reference to it is left


def execute(nodes: Nodes, task: dict[str, Any]) -> dict[str, Any]:
    count = len(nodes.names)
    shards = [nodes.submit(i, make_shard, task, i, count) for i in range(count)]
    nodes.gather(shards)  # made before any timing
    try:
        if task["op"] in TRAINING:
            return _train(nodes, task, shards)
        once = _kmeans(nodes, task, shards) if task["op"] == "kmeans" else (
            lambda: nodes.gather([nodes.submit(i, run_shard, task, s) for i, s in enumerate(shards)]))
        result, times = timed(once, task["warmup"], task["repeats"])
        return _result(nodes, task, times, _check(nodes, task, shards, result))
    finally:
        nodes.release(shards)


def _kmeans(nodes: Nodes, task: dict[str, Any], shards: list[Any]) -> Callable[[], float]:
    init = nodes.gather([nodes.submit(0, shard_init, shards[0])])[0]

    def once() -> float:
        centroids = init.clone()
        inertia = 0.0
        for _ in range(task["params"]["iterations"]):
            parts = nodes.gather([nodes.submit(i, kmeans_partials, task, s, centroids) for i, s in enumerate(shards)])
            sums = sum(p[0].double() for p in parts)
            counts = sum(p[1].double() for p in parts)
            inertia = float(sum(p[2] for p in parts))
            centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None],
                                    centroids.double()).to(init.dtype)
        return inertia

    return once


def _train(nodes: Nodes, task: dict[str, Any], shards: list[Any]) -> dict[str, Any]:
    """Every rank at once (torch.distributed, gloo); the rendezvous on the first node's host."""
    host = nodes.hosts[0]
    port = nodes.gather([nodes.submit(0, free_port, host)])[0]
    ranks = [nodes.submit(i, train_distributed, task, s, i, len(shards), f"tcp://{host}:{port}")
             for i, s in enumerate(shards)]
    results = nodes.gather(ranks)
    # the single-node kernel's check: the loss fell (it reads only the losses and the sizes)
    last = KERNELS[task["op"]].check(None, (results[0]["first"], results[0]["last"]), task["params"], task["dtype"])
    return _result(nodes, task, results[0]["times_s"], last)


def _result(nodes: Nodes, task: dict[str, Any], times: list[float], check: float) -> dict[str, Any]:
    return {"measured_s": statistics.median(times), "times_s": times, "check": check,
            "devices": [f"cpu@{name}" for name in nodes.names], "host": None, "threads": task.get("threads"),
            "workers": list(nodes.names)}


def _check(nodes: Nodes, task: dict[str, Any], shards: list[Any], result: Any) -> float:
    """Each shard's partial result checked where it lives (float64 reference of that shard);
    for kmeans, the inertia after the last iteration did not rise above the initial one."""
    if task["op"] == "kmeans":
        init = nodes.submit(0, shard_init, shards[0])
        start = sum(float(p[2]) for p in nodes.gather([nodes.submit(i, kmeans_partials, task, s, init)
                                                       for i, s in enumerate(shards)]))
        if not result <= start * 1.001:
            raise RuntimeError(f"kmeans: inertia rose from {start:.4g} to {result:.4g}")
        return result
    return max(nodes.gather([nodes.submit(i, check_shard, task, s, part)
                             for i, (s, part) in enumerate(zip(shards, result, strict=True))]))
