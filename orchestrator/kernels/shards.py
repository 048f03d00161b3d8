"""One node's part of a multi-node job (placements `cpu@K`): what runs on each worker.

Every node makes the job's inputs from the same seed and keeps only its shard (rows of A and
all of B for matmul, its batches for batched_matmul; its slice of the vectors for dot, sum and axpy; its slice of the points and
the initial centroids for kmeans), so a multi-node job's inputs start partitioned across the
nodes' host memory and making them is not timed. Each execution runs the op's own kernel on
every shard at once; the client gathers the partial results (the whole C of a matmul, a scalar
of a dot) and, for kmeans, combines the per-cluster sums of every Lloyd iteration.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from orchestrator.kernels import KERNELS
from orchestrator.kernels.base import TORCH_DTYPES
from orchestrator.kernels.harness import _set_threads
from orchestrator.workload.model import AUTO

SPLIT_KEYS = {"matmul": ("a",), "batched_matmul": ("a", "b"), "dot": ("x", "y"), "sum": ("x",),
              "axpy": ("x", "y", "y0"), "kmeans": ("x",), "train_linear": ("x", "y"), "train_mlp": ("x", "y")}
SIZE_KEY = {"matmul": "m", "batched_matmul": "batch", "dot": "n", "sum": "n", "axpy": "n", "kmeans": "samples",
            "train_linear": "samples", "train_mlp": "samples"}
TRAINING = frozenset({"train_linear", "train_mlp"})
RENDEZVOUS_TIMEOUT_S = 120
MULTI_NODE_OPS = frozenset(SPLIT_KEYS)


def shard_params(task: dict[str, Any], shard: dict[str, Any]) -> dict[str, Any]:
    op = task["op"]
    return {**task["params"], SIZE_KEY[op]: int(shard[SPLIT_KEYS[op][0]].shape[0])}


def make_shard(task: dict[str, Any], index: int, count: int) -> dict[str, Any]:
    """This node's shard of the job's inputs (made on the worker it stays on)."""
    kernel = KERNELS[task["op"]]
    gen = torch.Generator().manual_seed(task["seed"])
    inputs = kernel.make_inputs(task["params"], TORCH_DTYPES[task["dtype"]], gen, torch.device("cpu"))
    return {key: value.tensor_split(count)[index].clone() if key in SPLIT_KEYS[task["op"]] else value
            for key, value in inputs.items()}


def run_shard(task: dict[str, Any], shard: dict[str, Any]) -> Any:
    """One execution of the op on this node's shard."""
    _set_threads(task.get("threads"))
    return KERNELS[task["op"]].run(shard, shard_params(task, shard))


def check_shard(task: dict[str, Any], shard: dict[str, Any], result: Any) -> float:
    return KERNELS[task["op"]].check(shard, result, shard_params(task, shard), task["dtype"])


def shard_init(shard: dict[str, Any]) -> torch.Tensor:
    """kmeans: the initial centroids (the same on every node)."""
    return shard["init"]


def kmeans_partials(task: dict[str, Any], shard: dict[str, Any], centroids: torch.Tensor) -> tuple:
    _set_threads(task.get("threads"))
    return KERNELS["kmeans"]._partials(shard["x"], centroids.to(shard["x"].dtype))


def free_port(host: str) -> int:
    """A port free on this worker's host, for the training rendezvous (rank 0 listens there)."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def train_distributed(task: dict[str, Any], shard: dict[str, Any], rank: int, world: int, init_method: str) -> dict:
    """Data-parallel SGD across nodes with torch.distributed (gloo): one replica per node on its
    shard, gradients all-reduced (averaged) every step, the same steps on every rank. Every
    execution starts and ends at a barrier; rank 0's times are the job's."""
    import datetime as dt
    import math

    import torch.distributed as dist

    _set_threads(task.get("threads"))
    kernel = KERNELS[task["op"]]
    p = task["params"]
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=dt.timedelta(seconds=RENDEZVOUS_TIMEOUT_S))
    try:
        x, y = shard["x"], shard["y"]
        batch = max(1, p["batch_size"] // world)
        steps = math.ceil(math.ceil(p["samples"] / world) / batch)  # the largest shard's: equal on every rank

        def once() -> tuple[float, float]:
            model = kernel._model(p, x.dtype, torch.device("cpu"))
            first = last = None
            for _ in range(p["epochs"]):
                for step in range(steps):
                    start = min(step * batch, max(x.shape[0] - batch, 0))  # a short shard repeats its tail
                    model.zero_grad(set_to_none=True)
                    loss = kernel._loss(model, x[start:start + batch], y[start:start + batch])
                    loss.backward()
                    with torch.no_grad():
                        for param in model.parameters():
                            dist.all_reduce(param.grad)
                            param -= 0.05 * param.grad / world
                    value = loss.detach().float().reshape(1)
                    if step in (0, steps - 1):
                        dist.all_reduce(value)
                        last = float(value) / world
                        first = last if first is None else first
            return first, last

        result = (math.nan, math.nan)
        for _ in range(task["warmup"]):
            result = once()
        times = []
        # every rank runs the same count: "auto" cannot stop ranks at different times
        for _ in range(task["repeats"] if isinstance(task["repeats"], int) else AUTO.least):
            dist.barrier()
            started = time.perf_counter()
            result = once()
            dist.barrier()
            times.append(time.perf_counter() - started)
        return {"times_s": times, "first": result[0], "last": result[1]}
    finally:
        dist.destroy_process_group()


def where(_: Any = None) -> dict[str, Any]:
    import os
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
