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

SPLIT_KEYS = {"matmul": ("a",), "batched_matmul": ("a", "b"), "dot": ("x", "y"), "sum": ("x",),
              "axpy": ("x", "y", "y0"), "kmeans": ("x",)}
SIZE_KEY = {"matmul": "m", "batched_matmul": "batch", "dot": "n", "sum": "n", "axpy": "n", "kmeans": "samples"}
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


def kmeans_partials(task: dict[str, Any], shard: dict[str, Any], centroids: torch.Tensor) -> tuple:
    _set_threads(task.get("threads"))
    return KERNELS["kmeans"]._partials(shard["x"], centroids.to(shard["x"].dtype))


def where(_: Any = None) -> dict[str, Any]:
    import os
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
