"""Throughputs the cost model reads from a profile: the GEMM curve interpolated at a size and
dtype, bandwidths scaled by their achievable fraction, and per-call overheads.

Constants without a measured source are estimates, named here once, and are what
`orch calibrate` is meant to correct.
"""

from __future__ import annotations

import math

from orchestrator.curves import log_interpolate
from orchestrator.ops import Rate, Selection
from orchestrator.placement import Placement
from orchestrator.profile.model import CpuProfile, GpuProfile, NodeProfile

Device = CpuProfile | GpuProfile

# Fractions of the GEMM rate that blocked LAPACK (CPU) / cuSOLVER (GPU) factorisations reach at
# the same size: panel factorisations are latency-bound (estimate; cf. LAPACK Working Note 41).
FACTORIZATION_FRACTION = {"cpu": 0.5, "gpu": 0.25}
# FFTs run at a few percent of peak FLOP/s (FFTW/cuFFT benchmarks); they are usually memory-bound.
FFT_FRACTION = {"cpu": 0.03, "gpu": 0.05}
# Eager-mode training reaches part of the GEMM rate (elementwise kernels, optimiser).
TRAINING_FRACTION = 0.6
# Elementwise and reduction kernels: far below peak, memory-bound in practice.
STREAM_FRACTION = 0.25
DEFAULT_GEMM_RAMP_S = {"cpu": 5e-6, "gpu": 6e-6}  # estimate: BLAS threading / cuBLAS tile fill
TORCH_OP_S = 5e-6              # PyTorch eager per-op CPU dispatch (estimate; PyTorch perf tuning guide)
DEFAULT_DISPATCH_S = 1e-6      # NumPy call overhead (orch profile measures it)
DEFAULT_LAUNCH_S = 8e-6        # PyTorch op + CUDA launch + synchronize (orch profile measures it)
ASYNC_LAUNCH_FRACTION = 0.5    # later launches overlap with running kernels
DEFAULT_TRANSFER_LATENCY_S = 1e-5
# What DistributedDataParallel adds to a training step where the profile did not measure it
# (0.4 ms over gloo on the 2-core development VM; NCCL's launch path is shorter: a guess)
DEFAULT_DDP_STEP_S = {"cpu": 4e-4, "gpu": 1e-4}
# pageable host memory over pinned, where a profile has no pageable figure: measured 6.2 of
# 55 GB/s on a lent H100 VM, 20 of 64 estimated for bare-metal H100 (profiles/h100-sxm.yaml)
PAGEABLE_FRACTION = 0.2
DEFAULT_PYTHON_ELEMENT_S = 3e-8
HALF_ON_CPU_PENALTY = 0.25     # float16 GEMM on CPUs without native half arithmetic
CEILING_SIZE = 1e6  # a GEMM size beyond every measured curve (`gemm_ceiling`)
DEFAULT_CPU_CORE_W = 10.0   # estimate where a profile has no CPU power figure
DEFAULT_GPU_W = 300.0
# ATen's at::internal::GRAIN_SIZE: a CPU loop over at most this many elements runs on one thread
# (a top-k of 4 x 4096 took 41 us on one thread and on two here; of 16 x 4096, 139 and 78 us)
ATEN_GRAIN_SIZE = 32768


def kind_of(device: Device) -> str:
    return "gpu" if isinstance(device, GpuProfile) else "cpu"


def _efficiency(device: Device, figure: str) -> float:
    return device.efficiency.get(figure, 1.0)


def _curve_rate(curve: dict[int, float], size: float) -> float:
    """Log-log interpolation along a measured curve; flat beyond the largest size, falling
    linearly with size below the smallest (where fixed costs dominate anyway)."""
    sizes = sorted(curve)
    # Keep the model's shape (more work never predicts less time): along the curve the rate
    # never falls with size and grows at most as n^3 (so the time of one GEMM, 2n^3/rate, never
    # falls). Cleaned from the largest size down: large GEMMs are the steadiest measurements, and
    # one slow small-size sample (a JIT or a busy neighbour) must not drag the rest down.
    clean = {sizes[-1]: curve[sizes[-1]]}
    for lo, hi in zip(reversed(sizes[:-1]), reversed(sizes[1:])):
        clean[lo] = min(max(curve[lo], clean[hi] * (lo / hi) ** 3), clean[hi])
    curve = clean
    if size <= sizes[0]:
        return curve[sizes[0]] * size / sizes[0]
    return log_interpolate(sorted(curve.items()), size)


def _peak_rate(device: Device, dtype: str, size: float) -> float | None:
    """Datasheet peak x achievable fraction, ramped: W / (W / r + gemm_ramp_s) (Hockney's
    r_inf, n½ model with the half-performance work expressed as a fixed time per call)."""
    peak = device.peak_flops.get(dtype)
    if peak is None:
        return None
    # a dtype's own achievable fraction where the profile has one (`gemm_bfloat16`: AMX), else gemm's
    achievable = peak * device.efficiency.get(f"gemm_{dtype}", _efficiency(device, "gemm"))
    ramp = device.gemm_ramp_s or DEFAULT_GEMM_RAMP_S[kind_of(device)]
    work = 2.0 * size**3
    return work / (work / achievable + ramp)


def gemm_rate(device: Device, dtype: str, size: float) -> float | None:
    """FLOP/s of a GEMM of effective square size `size`; None where the device lacks the dtype."""
    size = max(size, 1.0)
    if dtype in device.gemm_flops:
        return _curve_rate(device.gemm_flops[dtype], size)
    direct = _peak_rate(device, dtype, size)
    if direct is not None:
        return direct
    if kind_of(device) == "cpu" and dtype in ("float16", "bfloat16"):
        fallback = gemm_rate(device, "float32", size)
        return None if fallback is None else fallback * HALF_ON_CPU_PENALTY
    return None


def gemm_ceiling(device: Device, dtype: str) -> float:
    """The fastest a product of matrices runs here: the GEMM curve beyond its largest size. A
    batch of small products can keep every core busy where one of them would not (a scale from
    batched_matmul's references beats the curve at the per-matrix size), but not faster than
    this: 8 x 200^3 float32 was predicted at 680 GFLOP/s on a VM whose largest GEMM ran 416
    and measured 343 (0.19 ms predicted, 0.37 measured). Where an op's own references ran
    faster (an H100's largest batched_matmul, 2%), the model takes theirs
    (`Hardware.fastest_references`)."""
    return gemm_rate(device, dtype, CEILING_SIZE) or math.inf


def compute_rate(rate: Rate, device: Device, dtype: str, size: float) -> float | None:
    """FLOP/s an op of this rate class runs at; None where the dtype is unsupported."""
    kind = kind_of(device)
    base = gemm_rate(device, dtype, size)
    if base is None:
        return None
    if rate is Rate.FACTORIZATION:
        return base * FACTORIZATION_FRACTION[kind]
    if rate is Rate.TRAINING:
        return base * TRAINING_FRACTION
    if rate in (Rate.FFT, Rate.STREAM):
        peak = max(device.peak_flops.get(dtype, 0.0), gemm_rate(device, dtype, CEILING_SIZE) or 0.0)
        return peak * (FFT_FRACTION[kind] if rate is Rate.FFT else STREAM_FRACTION)
    return base


def memory_bandwidth(device: Device, working_set_bytes: float | None = None) -> float:
    """Streaming bandwidth: on a CPU whose profile measured it by working set, read off that
    curve (log-log, flat beyond its ends, never rising faster than the size, so moving more
    bytes never takes less time); else the cache's where the working set fits in half the
    last-level cache, else memory's (the better of STREAM copy and triad)."""
    if isinstance(device, CpuProfile) and device.bandwidth_by_size and working_set_bytes is not None:
        curve: list[tuple[float, float]] = []
        for size, rate in sorted(device.bandwidth_by_size.items()):
            if curve:
                rate = min(rate, curve[-1][1] * size / curve[-1][0])
            curve.append((float(size), rate))
        return log_interpolate(curve, max(working_set_bytes, 1.0)) * _efficiency(device, "memory_bandwidth")
    if isinstance(device, CpuProfile) and device.cache_bandwidth and working_set_bytes is not None:
        llc = device.cache_bytes.get("l3") or device.cache_bytes.get("l2") or 0
        if working_set_bytes <= llc / 2:
            return device.cache_bandwidth
    raw = device.memory_bandwidth or (2e10 if kind_of(device) == "cpu" else 5e11)
    if isinstance(device, CpuProfile) and device.memory_bandwidth_triad:
        raw = max(raw, device.memory_bandwidth_triad)
    return raw * _efficiency(device, "memory_bandwidth")


def h2d_bandwidth(gpu: GpuProfile, nbytes: float | None = None) -> float:
    """Host to device from page-locked memory, or with `nbytes` from ordinary (pageable) host
    memory, as a job's `data: host` inputs are: the driver stages those through a pinned
    buffer, at the profile's measured rate for a copy of that size."""
    pinned = (gpu.h2d_bandwidth or 1.2e10) * _efficiency(gpu, "h2d_bandwidth")
    if nbytes is None:
        return pinned
    return _pageable(gpu.pageable_bandwidth.get("h2d"), nbytes) or gpu.h2d_bandwidth_pageable or pinned * PAGEABLE_FRACTION


def d2h_bandwidth(gpu: GpuProfile, nbytes: float | None = None) -> float:
    """Device to host into page-locked memory, or with `nbytes` into pageable memory (a `data:
    host` job's result)."""
    pinned = (gpu.d2h_bandwidth or gpu.h2d_bandwidth or 1.2e10) * _efficiency(gpu, "h2d_bandwidth")
    if nbytes is None:
        return pinned
    return (_pageable(gpu.pageable_bandwidth.get("d2h"), nbytes) or gpu.d2h_bandwidth_pageable
            or gpu.h2d_bandwidth_pageable or pinned * PAGEABLE_FRACTION)


def _pageable(curve: dict[int, float] | None, nbytes: float) -> float | None:
    """The measured pageable rate at this size. A smaller copy never takes longer than a larger
    one: each point's rate is raised where needed, from the largest copy down."""
    if not curve:
        return None
    sizes = sorted(curve, reverse=True)
    clean = [(sizes[0], curve[sizes[0]])]
    for size in sizes[1:]:
        clean.append((size, max(curve[size], clean[-1][1] * size / clean[-1][0])))
    return log_interpolate(clean[::-1], nbytes)


def peer_bandwidth(gpu: GpuProfile) -> float:
    """GPU to GPU: measured peer copy, else NVLink, else through the host over PCIe."""
    if gpu.p2p_bandwidth:
        return gpu.p2p_bandwidth
    if gpu.nvlink_bandwidth:
        return gpu.nvlink_bandwidth * 0.8
    return h2d_bandwidth(gpu) / 2


def call_overhead_s(device: Device, calls: int, rate: Rate, eager: bool = False) -> tuple[float, float]:
    """Fixed cost of `calls` library calls (CPU) or kernel launches (GPU), as (serial seconds,
    seconds that overlap the device's work). A CPU runs its calls and its work one after the
    other, each a torch call through the harness (`torch_call_s`; NumPy's dispatch where a
    profile predates it). A GPU's launches are asynchronous: the host issues them while earlier
    kernels run, so only the first launch and the final synchronisation are serial, and the rest
    overlap the kernels. Training runs autograd's eager ops (`torch_op_overhead_s`, measured in
    a training step); users' own ops (`eager`) run plain eager calls, each a torch call."""
    torch_op = device.torch_op_overhead_s or TORCH_OP_S
    if isinstance(device, GpuProfile):
        first = device.launch_latency_s or DEFAULT_LAUNCH_S
        per_call = max(first * ASYNC_LAUNCH_FRACTION, torch_op if rate is Rate.TRAINING or eager else 0.0)
        return first, max(calls - 1, 0) * per_call
    torch_call = device.torch_call_s
    per_call = torch_call or device.dispatch_overhead_s or DEFAULT_DISPATCH_S
    if rate is Rate.TRAINING or (eager and not torch_call):
        per_call = max(per_call, torch_op)
    return calls * per_call, 0.0


def on_cores(device: Device, elements: float) -> float:
    """The elements a CPU call over `elements` costs at the profile's rate (measured on every
    core): ATen keeps a loop of at most ATEN_GRAIN_SIZE elements on one thread, so a small call
    costs `cores` times its elements, and a larger one never less than the largest small one."""
    if not isinstance(device, CpuProfile):
        return elements
    return max(elements, min(elements, ATEN_GRAIN_SIZE) * device.cores_logical)


def softmax_s(device: Device, elements: float) -> float:
    """Seconds of softmax work (exponentials, maxima, sums): the profile's measured rate; 0
    where it measured none."""
    return on_cores(device, elements) * (device.softmax_s_per_element or 0.0)


def selection_s(device: Device, selections: tuple[Selection, ...]) -> float:
    """Seconds of sort-family work at the profile's measured rates: per element at the call's k
    (log-linear between measured ks, linear beyond the largest, never above a full sort's rate,
    on one thread where the call is that small); 0 where the profile measured none (reference
    profiles: such an op is priced by its bytes)."""
    measured = sorted(device.topk_s_per_element.items())
    full = device.sort_s_per_element
    seconds = 0.0
    for selection in selections:
        if selection.k is None or not measured:
            per_element = full or 0.0
        elif selection.k <= measured[-1][0] or len(measured) == 1:
            per_element = log_interpolate([(float(k), s) for k, s in measured], selection.k)
        else:
            (k0, s0), (k1, s1) = measured[-2:]
            per_element = s1 + (s1 - s0) / (k1 - k0) * (selection.k - k1)
            per_element = min(per_element, full) if full else per_element
        seconds += on_cores(device, selection.elements) * per_element
    return seconds


def python_element_s(cpu: CpuProfile) -> float:
    return cpu.python_loop_s_per_element or DEFAULT_PYTHON_ELEMENT_S


def ddp_step_s(device: Device) -> float:
    """Seconds DistributedDataParallel adds to each training step of a gang on this device."""
    return device.ddp_step_s or DEFAULT_DDP_STEP_S[kind_of(device)]


def monotone_scale(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Scales along the work axis whose scaled work (scale x work) never falls as the work
    grows, so the op's predicted time keeps the model's shape between reference sizes (two
    reference points whose scales differ by more than their work did made eigh on an H200
    predict 9.41 ms at n=570 and 9.07 ms at n=668). Cleaned from the largest point down: the
    largest run is the steadiest measurement."""
    clean = [points[-1]]
    for work, scale in reversed(points[:-1]):
        above_work, above_scale = clean[-1]
        clean.append((work, min(scale, above_scale * above_work / work)))
    return clean[::-1]


# Below its smallest reference an op's scale follows the trend of its two smallest, as a
# kernel's efficiency keeps falling with its size (a tall-skinny qr of 768x256 and an lstsq of
# 2048x192 ran 2.3x and 3.8x what the flat scale of their 2048x512 and 4096x256 references
# said); never steeper than SMALLER_SLOPE_AT_MOST in log-log (so more work never predicts less
# time) and at most SMALLER_SCALE_AT_MOST times the smallest reference's scale.
SMALLER_SLOPE_AT_MOST = 0.8
SMALLER_SCALE_AT_MOST = 4.0


def scale_at(points: list[tuple[float, float]], work_s: float) -> float:
    """An op's measured scale at `work_s` of modelled work: log-linear between its references,
    flat above the largest, and below the smallest along the trend of the two smallest where
    the scale falls with the work (else flat)."""
    (w0, s0) = points[0]
    if work_s >= w0 or len(points) < 2 or work_s <= 0:
        return log_interpolate(points, work_s)
    (w1, s1) = points[1]
    slope = math.log(s1 / s0) / math.log(w1 / w0) if w1 > w0 and s0 > 0 and s1 > 0 else 0.0
    slope = min(max(slope, -SMALLER_SLOPE_AT_MOST), 0.0)
    return s0 * min((work_s / w0) ** slope, SMALLER_SCALE_AT_MOST)


def power_w(node: NodeProfile, placement: Placement) -> float:
    """What a placement draws: its CPUs (a GPU job holds one core of each node), GPUs and idle."""
    cpu = node.cpu
    cpu_w = cpu.power_w or DEFAULT_CPU_CORE_W * cpu.cores_physical
    idle = node.power_idle_w or 0.0
    if placement.device == "cpu":
        per_node = cpu_w + idle
    else:
        gpu = node.usable_gpus[0]
        gpu_w = gpu.power_w or gpu.power_limit_w or DEFAULT_GPU_W
        per_node = placement.gpus * gpu_w + cpu_w / cpu.cores_physical + idle
    return per_node * placement.nodes
