"""Drive a multi-node job (`cpu@K`) on Dask from the client: one worker per node (distinct
hosts), each holding its shard of the inputs; every execution is timed from submitting the
shards' work to having every partial result back (for kmeans, every Lloyd iteration's partial
sums go to the client and the new centroids back out). `measured_s` is the median over
`repeats` after `warmup`, as for single-node jobs."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from orchestrator.kernels.shards import (
    TRAINING,
    check_shard,
    free_port,
    kmeans_partials,
    make_shard,
    run_shard,
    train_distributed,
)


def execute(client: Any, task: dict[str, Any], workers: list[str]) -> dict[str, Any]:
    count = len(workers)
    pin = [{"workers": [w], "allow_other_workers": False, "pure": False} for w in workers]
    shards = [client.submit(make_shard, task, i, count, **pin[i]) for i in range(count)]
    client.gather(shards)  # made before any timing
    if task["op"] in TRAINING:
        return _train(client, task, workers, shards, pin)

    if task["op"] == "kmeans":
        init = client.submit(lambda s: s["init"], shards[0], **pin[0]).result()

        def once() -> Any:
            centroids = init.clone()
            inertia = 0.0
            for _ in range(task["params"]["iterations"]):
                parts = client.gather([client.submit(kmeans_partials, task, s, centroids, **pin[i])
                                       for i, s in enumerate(shards)])
                sums = sum(p[0].double() for p in parts)
                counts = sum(p[1].double() for p in parts)
                inertia = float(sum(p[2] for p in parts))
                centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None],
                                        centroids.double()).to(init.dtype)
            return inertia
    else:
        def once() -> Any:
            return client.gather([client.submit(run_shard, task, s, **pin[i]) for i, s in enumerate(shards)])

    result = None
    for _ in range(task["warmup"]):
        result = once()
    times = []
    for _ in range(task["repeats"]):
        started = time.perf_counter()
        result = once()
        times.append(time.perf_counter() - started)
    check = _check(client, task, shards, pin, result)
    client.cancel(shards)
    return {"measured_s": statistics.median(times), "times_s": times, "check": check,
            "devices": [f"cpu@{w}" for w in workers], "host": None, "threads": task.get("threads"), "workers": workers}


def _train(client: Any, task: dict[str, Any], workers: list[str], shards: list[Any],
           pin: list[dict[str, Any]]) -> dict[str, Any]:
    """Training: every rank runs at once (torch.distributed, gloo), rendezvous at rank 0's host."""
    from distributed.comm import get_address_host

    host = get_address_host(workers[0])
    port = client.submit(free_port, host, **pin[0]).result()
    ranks = [client.submit(train_distributed, task, s, i, len(workers), f"tcp://{host}:{port}", **pin[i])
             for i, s in enumerate(shards)]
    results = client.gather(ranks)
    client.cancel(shards)
    first, last = results[0]["first"], results[0]["last"]
    steps = task["params"]["epochs"] * -(-task["params"]["samples"] // task["params"]["batch_size"])
    if not last == last or (steps > 4 and not last < first * 1.05):
        raise RuntimeError(f"{task['op']}: loss went from {first:.4g} to {last:.4g}")
    times = results[0]["times_s"]
    return {"measured_s": statistics.median(times), "times_s": times, "check": last,
            "devices": [f"cpu@{w}" for w in workers], "host": None, "threads": task.get("threads"), "workers": workers}


def _check(client: Any, task: dict[str, Any], shards: list[Any], pin: list[dict[str, Any]], result: Any) -> float:
    """Each shard's partial result checked where it lives (float64 reference of that shard);
    for kmeans, the inertia after the last iteration did not rise above the initial one."""
    if task["op"] == "kmeans":
        start = sum(float(p[2]) for p in client.gather([
            client.submit(kmeans_partials, task, s, client.submit(lambda sh: sh["init"], shards[0], **pin[0]), **pin[i])
            for i, s in enumerate(shards)]))
        if not result <= start * 1.001:
            raise RuntimeError(f"kmeans: inertia rose from {start:.4g} to {result:.4g}")
        return result
    errors = client.gather([client.submit(check_shard, task, s, part, **pin[i])
                            for i, (s, part) in enumerate(zip(shards, result, strict=True))])
    return max(errors)
