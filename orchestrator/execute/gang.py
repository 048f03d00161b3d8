"""One rank of a gang: what each worker of a `gpu:N`, `gpu:N@K` or `cpu@K` job runs.

Every rank makes the job's inputs from the same seed and keeps its shard (`make_shard`), joins a
`torch.distributed` process group (NCCL on CUDA, gloo on the CPU and on stand-in GPUs) and runs
the op's distributed form (`Op.run_rank`): matmul row blocks all-gathered, dot and sum
all-reduced, axpy on its shard, k-means with its per-cluster sums all-reduced every iteration,
training as DistributedDataParallel. No partial result goes through the client.

Every execution starts and ends at a barrier (after the device has finished); rank 0's times are
the job's, and every rank takes them (a broadcast), so `repeats: auto` and a GPU's warm-up stop
every rank at the same execution. The group is formed, and every collective runs, under a timeout (ORCH_COLLECTIVE_TIMEOUT_S,
default 120 s): a rank whose peer dies raises within it, and the group is torn down whatever
happens.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from typing import Any

import torch
import torch.distributed as dist

from orchestrator import ops
from orchestrator.execute.harness import TORCH_DTYPES, _inject_crash, _inject_failure, _set_threads, timed, to_device
from orchestrator.execute.sentinel import sync
from orchestrator.execute.task import Task

DEFAULT_TIMEOUT_S = 120.0


class Comm:
    """This rank's view of the gang: where it sits in the split and the collectives it needs.
    Tensors go through `device` (NCCL reduces only CUDA tensors) and come back where they were."""

    def __init__(self, rank: int, world: int, total: int, device: torch.device) -> None:
        self.rank, self.world, self.total, self.device = rank, world, total, device
        sizes = [len(part) for part in torch.arange(total).tensor_split(world)]
        self.sizes = sizes
        self.start, self.count = sum(sizes[:rank]), sizes[rank]

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over every rank (in place where the tensor is on the group's device)."""
        moved = tensor.to(self.device)
        dist.all_reduce(moved)
        return moved if moved is tensor else moved.to(tensor.device)

    def agree(self, seconds: float) -> float:
        """Rank 0's value of `seconds`, on every rank (a broadcast)."""
        value = torch.tensor([seconds], dtype=torch.float64, device=self.device)
        dist.broadcast(value, src=0)
        return float(value)

    def gather_rows(self, block: torch.Tensor) -> torch.Tensor:
        """Every rank's row block, in rank order (an all-gather; blocks padded to the largest)."""
        largest = max(self.sizes)
        padded = torch.zeros((largest, *block.shape[1:]), dtype=block.dtype, device=self.device)
        padded[:block.shape[0]] = block
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:size] for part, size in zip(parts, self.sizes, strict=True)])


def make_shard(op: ops.Op, task: Task, rank: int, world: int) -> dict[str, Any]:
    """This rank's shard of the job's inputs, in host memory (made before any timing)."""
    gen = torch.Generator().manual_seed(task.seed)
    inputs = op.make_inputs(task.params, TORCH_DTYPES[task.dtype], gen, torch.device("cpu"))
    return {key: value.tensor_split(world)[rank].clone() if key in op.gang_split else value
            for key, value in inputs.items()}


def device_of(task: Task) -> torch.device:
    """The device this rank computes on: its worker's one GPU (the engine set
    CUDA_VISIBLE_DEVICES to it), else the CPU (cpu@K, and stand-in GPUs under ORCH_FAKE_GPUS)."""
    if task.placement.device == "gpu" and not os.environ.get("ORCH_FAKE_GPUS"):
        if not torch.cuda.is_available():
            raise RuntimeError("placement needs a CUDA GPU but this worker's torch sees none")
        return torch.device("cuda", 0)
    return torch.device("cpu")


def _join(backend: str, rank: int, world: int, init_method: str) -> None:
    """Join the gang's process group; forming it, and every collective after, time out after
    ORCH_COLLECTIVE_TIMEOUT_S (default DEFAULT_TIMEOUT_S)."""
    timeout = dt.timedelta(seconds=float(os.environ.get("ORCH_COLLECTIVE_TIMEOUT_S") or DEFAULT_TIMEOUT_S))
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world, timeout=timeout)


def rank_main(task: Task, rank: int, world: int, init_method: str) -> dict[str, Any]:
    """Join the gang, run the job's executions, check this rank's part; rank 0 returns the times."""
    op = ops.get(task.op)
    if not op.gang_split:
        raise RuntimeError(f"{task.op} has no distributed form")
    device = device_of(task)
    if device.type == "cpu":
        _set_threads(task.threads)
    else:
        torch.cuda.set_device(device)
    _join("nccl" if device.type == "cuda" else "gloo", rank, world, init_method)
    try:
        _inject_failure(task.name)
        _inject_crash(task.name)
        shard = make_shard(op, task, rank, world)
        size = op.gang_size
        comm = Comm(rank, world, int(task.params[size]), device)
        params = {**task.params, size: comm.count}
        on_device = task.data == "device" or device.type == "cpu"
        kept = {k: v for k, v in shard.items() if k not in op.check_only}  # what the kernel reads
        work = to_device(kept, device) if on_device else kept

        def once() -> tuple[Any, float]:
            dist.barrier()
            started = time.perf_counter()
            result = op.run_rank(work if on_device else to_device(work, device), params, comm)
            sync(device)
            dist.barrier()
            return result, time.perf_counter() - started

        def agreed() -> tuple[Any, float]:
            result, seconds = once()
            return result, comm.agree(seconds)  # rank 0's: every rank warms, repeats and stops alike

        result, times = timed(None, task.warmup, task.repeats, warm_until_warm=task.warmup > 0 or device.type == "cuda",
                              clock=agreed)
        check = op.check_rank(shard, result, params, task.dtype, comm)
        return {"times_s": times if rank == 0 else [], "check": check, "device": str(device),
                "host": socket.gethostname(), "pid": os.getpid()}
    finally:
        dist.destroy_process_group()


LINK_SMALL_ROUNDS, LINK_LARGE_BYTES, LINK_LARGE_ROUNDS = 50, 64 << 20, 5


def link_rank(rank: int, world: int, init_method: str) -> dict[str, float]:
    """The link between the gang's ranks as its collectives see it (gloo, CPU tensors): the
    median all-reduce of one float32 and of 64 MiB, after a warm-up of each; rank 0 answers."""
    import statistics

    _join("gloo", rank, world, init_method)
    try:
        found = {}
        for name, elements, rounds in (("small_s", 1, LINK_SMALL_ROUNDS),
                                       ("large_s", LINK_LARGE_BYTES // 4, LINK_LARGE_ROUNDS)):
            tensor = torch.ones(elements)
            dist.all_reduce(tensor)
            times = []
            for _ in range(rounds):
                dist.barrier()
                started = time.perf_counter()
                dist.all_reduce(tensor)
                times.append(time.perf_counter() - started)
            found[name] = statistics.median(times)
        return {**found, "bytes": float(LINK_LARGE_BYTES), "world": float(world)}
    finally:
        dist.destroy_process_group()
