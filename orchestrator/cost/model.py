"""Predicted time of one job on one placement (docs/cost-model.md has every formula):

    predicted = overhead + max(compute, memory) + transfer + communication

`bound` names the largest term. A candidate whose working set does not fit, whose dtype the
device lacks, or that the op cannot run on is infeasible, with a note.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from orchestrator.cost import calibration as learned
from orchestrator.cost import rates
from orchestrator.ops import ITEMSIZE, Kernel, Split
from orchestrator.ops import get as get_op
from orchestrator.placement import Placement
from orchestrator.profile.model import GpuProfile, Network, NodeProfile
from orchestrator.workload.model import Job

CPU_MEMORY_USABLE = 0.8     # leave room for the OS, Python and the worker
GPU_MEMORY_USABLE = 0.9     # CUDA context, allocator fragmentation
NCCL_LATENCY_S = 1e-5       # per ring step inside a node (NCCL tests, small messages)
TASK_OVERHEAD_S = 1e-3      # Dask: about 1 ms of scheduler time per task (Dask best-practices docs)
DEFAULT_CPU_CORE_W = 10.0   # estimate where a profile has no CPU power figure
DEFAULT_GPU_W = 300.0


@dataclass(frozen=True)
class Hardware:
    """What a plan is made for: one node profile, K identical nodes, the network between them."""

    name: str
    node: NodeProfile
    nodes: int = 1
    network: Network | None = None
    calibration: learned.Calibration | None = None  # factors learned from recorded runs
    spread: tuple[str, ...] = ("cpu", "gpu")  # devices whose multi-node placements are offered

    @functools.cached_property
    def gpus(self) -> list[GpuProfile]:
        return self.node.usable_gpus

    @functools.cached_property
    def op_scales(self) -> dict[tuple[str, str], list[tuple[float, float]]]:
        """(device kind, op) -> [(work in FLOPs, measured / modelled time)] of the op's kernel at
        its reference sizes (profile `op_benchmarks`), sorted by work."""
        scales: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for kind, device in (("cpu", self.node.cpu), ("gpu", self.gpus[0] if self.gpus else None)):
            for op, benches in (device.op_benchmarks.items() if device is not None else []):
                points = []
                for bench in benches:
                    job = Job(name="reference", op=op, params=bench.params, dtype=bench.dtype, data=bench.data)
                    raw = predict(job, Placement(kind, 1 if kind == "gpu" else 0), self, scaled=False)
                    work = max(raw.terms.get("compute_s", 0.0), raw.terms.get("memory_s", 0.0))
                    if raw.feasible and work > 0:
                        fixed = raw.predicted_s - work
                        points.append((get_op(op).flops(bench.params), min(max((bench.measured_s - fixed) / work, 0.05), 20.0)))
                if points:
                    scales[(kind, op)] = sorted(points)
        return scales

    def op_scale(self, kind: str, op: str, flops: float) -> float:
        """The measured scale at this much work: log-linear between reference points, flat beyond."""
        points = self.op_scales.get((kind, op))
        return rates.log_interpolate(points, flops) if points else 1.0


@dataclass
class Prediction:
    placement: str
    feasible: bool
    predicted_s: float = math.inf
    bound: str = "compute"
    note: str | None = None
    terms: dict[str, float] = field(default_factory=dict)
    cost_usd: float | None = None
    energy_j: float | None = None

    def objective_value(self, objective: str) -> float:
        value = {"time": self.predicted_s, "cost": self.cost_usd, "energy": self.energy_j}[objective]
        return math.inf if value is None or not self.feasible else value


def _infeasible(placement: Placement, note: str) -> Prediction:
    return Prediction(str(placement), feasible=False, note=note)


def _allreduce_s(nbytes: float, devices: int, bandwidth: float, latency_s: float) -> float:
    """Ring all-reduce: 2(n-1)/n * S / B + 2(n-1) * latency (Patarasuk & Yuan, 2009)."""
    if devices <= 1:
        return 0.0
    return 2 * (devices - 1) / devices * nbytes / bandwidth + 2 * (devices - 1) * latency_s


def _power_w(hw: Hardware, placement: Placement) -> float:
    cpu = hw.node.cpu
    cpu_w = cpu.power_w or DEFAULT_CPU_CORE_W * cpu.cores_physical
    idle = hw.node.power_idle_w or 0.0
    if placement.device == "cpu":
        per_node = cpu_w + idle
    else:
        gpu = hw.gpus[0]
        gpu_w = gpu.power_w or gpu.power_limit_w or DEFAULT_GPU_W
        per_node = placement.gpus * gpu_w + cpu_w / cpu.cores_physical + idle
    return per_node * placement.nodes


def _per_device(total: float, replicated: float, share: int) -> float:
    """What one of `share` devices holds or moves: its shard, plus the replicated part whole."""
    return (total - replicated) / share + replicated


def _feasibility(job: Job, placement: Placement, hw: Hardware) -> str | None:
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
    needed = _per_device(op.working_set_elements(p), op.replicated_elements(p), share) * itemsize
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


def predict(job: Job, placement: Placement, hw: Hardware, scaled: bool = True, calibrated: bool = True) -> Prediction:
    """Predicted seconds of one execution of `job` on `placement` (the contract's measured_s).
    `scaled=False` leaves out the op's measured scale (how the scale itself is derived);
    `calibrated=False` the factors learned from recorded runs (how those are fitted)."""
    problem = _feasibility(job, placement, hw)
    if problem:
        return _infeasible(placement, problem)
    op = get_op(job.op)
    p, itemsize = job.params, ITEMSIZE[job.dtype]
    n = placement.devices
    device = hw.gpus[0] if placement.device == "gpu" else hw.node.cpu
    kind = rates.kind_of(device)
    split = op.split is not Split.NONE and n > 1
    share = n if split else 1

    terms = {"overhead_s": 0.0, "compute_s": 0.0, "memory_s": 0.0, "transfer_s": 0.0, "communication_s": 0.0}
    if op.kernel is Kernel.PYTHON:
        terms["compute_s"] = p["n"] * rates.python_element_s(hw.node.cpu)
    else:
        work_per_call = op.flops(p) / share / op.calls(p, kind)
        size = (work_per_call / 2) ** (1 / 3)  # the square GEMM with that work
        rate = rates.compute_rate(op.kernel, device, job.dtype, size)
        if rate is None:
            return _infeasible(placement, f"{getattr(device, 'name', 'cpu')} has no {job.dtype} support")
        terms["compute_s"] = op.flops(p) / (share * rate)
        replicated = op.replicated_elements(p)
        traffic = _per_device(op.traffic_elements(p), replicated, share)
        working_set = _per_device(op.working_set_elements(p), replicated, share) * itemsize
        terms["memory_s"] = traffic * itemsize / rates.memory_bandwidth(device, working_set)
        scale = hw.op_scale(kind, op.name, op.flops(p) / share) if scaled else 1.0
        terms["compute_s"] *= scale
        terms["memory_s"] *= scale
    calls = op.kernels(p)
    terms["overhead_s"] = rates.call_overhead_s(device, calls, op.kernel) * (placement.gpus if placement.device == "gpu" else 1)
    if placement.nodes > 1:
        terms["overhead_s"] += TASK_OVERHEAD_S * placement.nodes

    in_bytes = op.input_elements(p) * itemsize
    out_bytes = op.output_elements(p) * itemsize
    repl_bytes = op.replicated_elements(p) * itemsize
    moves_data = op.split is not Split.DATA_PARALLEL
    if placement.device == "gpu" and job.data == "host":
        gpu = hw.gpus[0]
        # one process scatters the shards from host memory (and copies the replicated part to
        # every GPU of its node): the copies share the host side, so they add up
        gpus_here = placement.gpus if split else 1
        h2d = (in_bytes - repl_bytes) / placement.nodes + repl_bytes * gpus_here
        latency = gpu.transfer_latency_s or rates.DEFAULT_TRANSFER_LATENCY_S
        # host inputs are ordinary (pageable) memory, as the harness makes them and as NumPy's are
        out = out_bytes / placement.nodes
        terms["transfer_s"] = (h2d / rates.h2d_bandwidth(gpu, nbytes=h2d) + out / rates.d2h_bandwidth(gpu, nbytes=out)
                               + 2 * latency * gpus_here)
    elif placement.device == "cpu" and job.data == "device" and hw.gpus:
        gpu = hw.gpus[0]
        terms["transfer_s"] = (in_bytes / rates.d2h_bandwidth(gpu, nbytes=in_bytes)
                               + out_bytes / rates.h2d_bandwidth(gpu, nbytes=out_bytes))
    elif placement.device == "gpu" and job.data == "device" and split and moves_data and placement.nodes == 1:
        # inputs sit on the first GPU: scatter the shards and the replicated part, gather the result
        out_of_gpu0 = (in_bytes - repl_bytes) * (n - 1) / n + repl_bytes * (n - 1) + out_bytes * (n - 1) / n
        terms["transfer_s"] = out_of_gpu0 / rates.peer_bandwidth(hw.gpus[0])
    if placement.nodes > 1 and moves_data and hw.network is not None:
        # a multi-node job's inputs start partitioned across the nodes (each makes its own shard
        # and the replicated part); every execution gathers the results to the client
        terms["transfer_s"] += out_bytes / hw.network.bandwidth + 2 * hw.network.latency_s

    if split and op.split in (Split.SHARDS_REDUCE, Split.DATA_PARALLEL):
        nbytes = op.collective_elements(p) * max(itemsize, 4)
        if placement.nodes > 1 and hw.network is not None:
            bandwidth, latency = hw.network.bandwidth, hw.network.latency_s
        else:
            bandwidth = rates.peer_bandwidth(hw.gpus[0]) if placement.device == "gpu" else rates.memory_bandwidth(device)
            latency = NCCL_LATENCY_S
        terms["communication_s"] = op.collectives(p) * _allreduce_s(nbytes, n, bandwidth, latency)

    if calibrated and hw.calibration is not None:
        terms = learned.apply(terms, hw.calibration.factors(op.name, placement.device, job.dtype))
    predicted = terms["overhead_s"] + max(terms["compute_s"], terms["memory_s"]) + terms["transfer_s"] + terms["communication_s"]
    bound = max(terms, key=terms.get).removesuffix("_s")
    prediction = Prediction(str(placement), True, predicted, bound, terms=terms)
    if job.data == "device" and not hw.gpus:
        prediction.note = "data: device on a machine without a GPU: inputs start in host memory"
    price = hw.node.price_usd_per_hour
    prediction.cost_usd = predicted / 3600 * price * placement.nodes if price else None
    prediction.energy_j = predicted * _power_w(hw, placement)
    if job.max_cost_usd is not None and prediction.cost_usd is not None and prediction.cost_usd > job.max_cost_usd:
        prediction.feasible = False
        prediction.note = f"predicted ${prediction.cost_usd:.4g} exceeds max_cost_usd {job.max_cost_usd}"
    return prediction


def candidates(hw: Hardware) -> list[Placement]:
    """Every placement the hardware offers: cpu, gpu, gpu:N (powers of two and all), and the
    multi-node forms cpu@K and gpu:N@K."""
    found = [Placement("cpu")]
    gpu_count = len(hw.gpus)
    counts = sorted({c for c in (1, 2, 4, 8, 16) if c <= gpu_count} | ({gpu_count} if gpu_count else set()))
    found += [Placement("gpu", c) for c in counts]
    node_counts = sorted({k for k in (2, 4, 8, 16, 32, 64) if k <= hw.nodes} | ({hw.nodes} if hw.nodes > 1 else set()))
    for k in node_counts:
        if "cpu" in hw.spread:
            found.append(Placement("cpu", 0, k))
        if gpu_count and "gpu" in hw.spread:
            found.append(Placement("gpu", gpu_count, k))
    return found
