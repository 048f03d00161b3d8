"""What a job moves: the copies one execution makes between host and device, and a gang's
communication, the slowest link its collectives cross and the seconds its collectives take
over it (docs/cost-model.md, "transfer" and "communication")."""

from __future__ import annotations

from orchestrator.cost import rates
from orchestrator.ops import Op, Split
from orchestrator.placement import Placement
from orchestrator.profile.model import CpuProfile, GpuProfile, Network

LOOPBACK_LATENCY_S = 5e-5  # gloo over TCP on one host: a small message, there and back


def transfer_s(op: Op, p: dict, itemsize: int, placement: Placement, gpu: GpuProfile | None, data: str) -> float:
    """Seconds of the copies one execution makes between host and device, as the harness and
    the gang's ranks make them: a GPU job with `data: host` copies its inputs in (each rank its
    shard and the replicated part, the ranks of a node sharing its host memory) and, on one
    GPU, its result out (a gang's result stays on its ranks); a CPU job with `data: device`
    copies its inputs out of the GPU."""
    n = placement.devices
    split = op.split is not Split.NONE and n > 1
    in_bytes, out_bytes = op.input_bytes(p, itemsize), op.output_bytes(p, itemsize)
    repl_bytes = op.replicated_elements(p) * itemsize
    if placement.device == "gpu" and data == "host" and gpu is not None:
        gpus_here = placement.gpus if split else 1
        h2d = (in_bytes - repl_bytes) / placement.nodes + repl_bytes * gpus_here
        latency = gpu.transfer_latency_s or rates.DEFAULT_TRANSFER_LATENCY_S
        # host inputs are ordinary (pageable) memory, as the harness makes them and as NumPy's are
        seconds = h2d / rates.h2d_bandwidth(gpu, nbytes=h2d) + latency
        if n == 1:
            seconds += out_bytes / rates.d2h_bandwidth(gpu, nbytes=out_bytes) + latency
        return seconds
    if placement.device == "cpu" and data == "device" and gpu is not None:
        return in_bytes / rates.d2h_bandwidth(gpu, nbytes=in_bytes)
    return 0.0


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
