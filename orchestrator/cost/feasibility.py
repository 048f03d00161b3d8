"""Whether a job can run on a placement at all: the op runs there, the nodes and GPUs exist,
the device has the dtype, and the working set fits in memory. A candidate that fails is
infeasible, with this one-line note (`model.predict`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.cost import rates
from orchestrator.ops import ITEMSIZE, Split
from orchestrator.ops import get as get_op
from orchestrator.placement import Placement
from orchestrator.workload.model import Job

if TYPE_CHECKING:
    from orchestrator.cost.model import Hardware

CPU_MEMORY_USABLE = 0.8     # leave room for the OS, Python and the worker
GPU_MEMORY_USABLE = 0.9     # CUDA context, allocator fragmentation


def per_device(total: float, replicated: float, share: int) -> float:
    """What one of `share` devices holds or moves: its shard, plus the replicated part whole."""
    return (total - replicated) / share + replicated


def feasibility(job: Job, placement: Placement, hw: Hardware) -> str | None:
    op = get_op(job.op)
    reason = op.where_not(placement.kind)
    if reason:
        return reason
    if placement.nodes > hw.nodes:
        return f"needs {placement.nodes} nodes; {hw.name} has {hw.nodes}"
    if placement.device == "gpu":
        if not hw.gpus:
            return f"{hw.name} has no usable GPU"
        if placement.gpus > len(hw.gpus):
            return f"needs {placement.gpus} GPUs per node; {hw.name} has {len(hw.gpus)}"
        if rates.gemm_rate(hw.gpus[0], job.dtype, 1024) is None:
            return f"{hw.gpus[0].name} has no {job.dtype} support"
    p, itemsize = job.params, ITEMSIZE[job.dtype]
    share = placement.devices if op.split is not Split.NONE else 1
    needed = per_device(op.working_set_bytes(p, itemsize), op.replicated_elements(p) * itemsize, share)
    if placement.device == "cpu":  # a CPU worker also holds what the kernel and its check allocate
        needed = max(needed, op.peak_bytes(p, itemsize) / share)
    if placement.device == "gpu":
        limit = (hw.gpus[0].memory_total_bytes or 0) * GPU_MEMORY_USABLE
        where = f"{hw.gpus[0].name} memory"
    else:
        limit = hw.node.cpu.memory_total_bytes * CPU_MEMORY_USABLE
        where = "host memory"
    if needed > limit:
        return (f"working set {needed / 1e9:.3g} GB per device exceeds {limit / 1e9:.3g} GB usable of {where}"
                + ("; try more devices" if op.split is not Split.NONE else ""))
    return None
