"""A gang's communication: the slowest link its collectives cross, and the seconds its
collectives take over it in one execution (docs/cost-model.md, "communication")."""

from __future__ import annotations

from orchestrator.cost import rates
from orchestrator.ops import Op, Split
from orchestrator.placement import Placement
from orchestrator.profile.model import CpuProfile, GpuProfile, Network

LOOPBACK_LATENCY_S = 5e-5  # gloo over TCP on one host: a small message, there and back


def link_of(placement: Placement, network: Network | None, gpu: GpuProfile | None,
            cpu: CpuProfile) -> tuple[float, float]:
    """Bandwidth (bytes/s) and latency (s) of the slowest link a gang's collectives cross: the
    network between nodes; within a node GPU to GPU (NVLink, else PCIe), or host memory for CPU
    ranks and stand-ins (gloo over loopback)."""
    if placement.nodes > 1 and network is not None:
        return network.bandwidth, network.latency_s
    if placement.device == "gpu" and gpu is not None and not gpu.stand_in:
        return rates.peer_bandwidth(gpu), gpu.transfer_latency_s or rates.DEFAULT_TRANSFER_LATENCY_S
    return rates.memory_bandwidth(cpu) / 4, LOOPBACK_LATENCY_S


def communication_s(op: Op, p: dict, itemsize: int, placement: Placement, link: tuple[float, float]) -> float:
    """Seconds of a gang's collectives in one execution, one formula per pattern over the
    slowest link they cross (`link`, from `link_of`), ring algorithms (Patarasuk & Yuan, 2009) over n ranks:
    - all-reduce of S bytes: 2(n-1)/n x S / B + 2(n-1) x latency, per tensor for the latency;
    - all-gather of a result of S bytes (matmul's row blocks): (n-1)/n x S / B + (n-1) x latency;
    - two barriers (each a tiny all-reduce) around every execution.
    Dot and sum all-reduce their partial once; k-means its sums, counts and inertia every
    iteration; training its gradients every step (DDP, in buckets); axpy exchanges nothing."""
    n = placement.devices
    bandwidth, latency = link
    barriers = 2 * 2 * (n - 1) * latency
    if op.split is Split.ROW_BLOCKS:
        return barriers + (n - 1) / n * op.output_bytes(p, itemsize) / bandwidth + (n - 1) * latency
    if op.split not in (Split.SHARDS_REDUCE, Split.DATA_PARALLEL):
        return barriers
    reduced, tensors = op.collective_bytes(p, itemsize), op.collective_tensors(p)
    per_round = 2 * (n - 1) / n * reduced / bandwidth + tensors * 2 * (n - 1) * latency
    return barriers + op.collectives(p) * per_round
