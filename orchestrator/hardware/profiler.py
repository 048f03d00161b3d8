"""`orch profile`: discovery, then microbenchmarks, checked against ceilings, into a NodeProfile."""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from orchestrator import __version__
from orchestrator.execute import allocator
from orchestrator.hardware import bench_cpu, bench_gpu, bench_ops
from orchestrator.hardware.cpu import discover_cpu
from orchestrator.hardware.nvml import GpuDiscovery, discover_gpus
from orchestrator.hardware.standin import fake_gpu_count, stand_in_gpus
from orchestrator.hardware.peaks import accept, gpu_ceilings
from orchestrator.profile.model import CpuProfile, GpuProfile, NodeProfile, SystemInfo
from orchestrator.profile.store import this_host
from orchestrator.units import utc_now

Progress = Callable[[str, int, int], None]  # (what is running, steps done, steps total)


def cpu_gemm_dtypes(cpu: CpuProfile) -> list[str]:
    native_bf16 = {"avx512_bf16", "amx_bf16", "bf16"} & set(cpu.simd)
    return ["float32", "float64"] + (["bfloat16"] if native_bf16 else [])


# step() calls outside the GEMM ladders and op kernels, for the progress bar's total
# memory bandwidth, dispatch, torch call, cache bandwidth, bandwidth by working set, pytorch op,
# DDP step, sentinel, top-k and sort, the kernels' second pass, python loop
CPU_FIXED_STEPS = 11
GPU_FIXED_STEPS = 4  # memory bandwidth, host<->device, pageable copies by size, launch latency


def _cpu_plan(cpu: CpuProfile, quick: bool) -> bench_cpu.CpuBenchPlan:
    return bench_cpu.CpuBenchPlan.for_machine(
        quick=quick, llc_bytes=cpu.cache_bytes.get("l3") or cpu.cache_bytes.get("l2"),
        available_bytes=cpu.memory_available_bytes or cpu.memory_total_bytes)


def _bench_cpu(cpu: CpuProfile, quick: bool, flags: list[str], step: Callable[[str], None]) -> None:
    plan = _cpu_plan(cpu, quick)
    bench_cpu.warm_up()
    for dtype in cpu_gemm_dtypes(cpu):
        curve: dict[int, float] = {}
        for n in plan.sizes_for(dtype):
            step(f"cpu gemm {dtype} n={n}")
            value = accept(bench_cpu.gemm_flops(dtype, n, min_time_s=plan.min_time_s),
                           cpu.theoretical_peak_flops.get(dtype), f"cpu.gemm_flops.{dtype}[{n}]", flags)
            if value is not None:
                curve[n] = value
        if curve:
            cpu.gemm_flops[dtype] = curve
            cpu.peak_flops[dtype] = max(curve.values())
    step(f"cpu memory bandwidth ({plan.stream_bytes >> 20} MiB arrays)")
    cpu.memory_bandwidth, cpu.memory_bandwidth_triad = bench_cpu.stream_bandwidth(
        plan.stream_bytes, min_time_s=plan.min_time_s)
    step("cpu dispatch overhead")
    cpu.dispatch_overhead_s = bench_cpu.dispatch_overhead_s(min_time_s=plan.min_time_s)
    step("cpu torch call through the harness")
    cpu.torch_call_s = bench_cpu.torch_call_s()
    step("cpu cache bandwidth")
    cached = bench_cpu.cache_bandwidth(cpu.cache_bytes.get("l3") or cpu.cache_bytes.get("l2"), min_time_s=plan.min_time_s)
    dram = max(cpu.memory_bandwidth or 0.0, cpu.memory_bandwidth_triad or 0.0)
    if cached is not None and cached <= dram:
        flags.append(f"cpu.cache_bandwidth: measured {cached:.3g} B/s, not above memory's {dram:.3g}; not saved")
        cached = None
    cpu.cache_bandwidth = cached
    step("cpu bandwidth by working set")
    cpu.bandwidth_by_size = bench_cpu.bandwidth_by_size(cpu.memory_available_bytes or cpu.memory_total_bytes,
                                                        min_time_s=plan.min_time_s / 4)
    step("pytorch per-op overhead")
    cpu.torch_op_overhead_s = bench_cpu.torch_op_overhead_s("cpu")
    step("distributed data parallel, per step")
    cpu.ddp_step_s = bench_cpu.ddp_step_s("cpu")
    step("cpu sentinel")
    cpu.sentinel = bench_cpu.sentinel_times("cpu")
    step("cpu top-k, sort and softmax")
    cpu.topk_s_per_element, cpu.sort_s_per_element = bench_cpu.selection_s_per_element("cpu", min_time_s=plan.min_time_s)
    cpu.softmax_s_per_element = bench_cpu.softmax_s_per_element("cpu", min_time_s=plan.min_time_s)
    for op in bench_ops.CPU_REFERENCE:
        step(f"cpu {op} kernel")
        cpu.op_benchmarks[op] = [bench_ops.measure(op, params, "cpu", threads or cpu.cores_logical, dtype=dtype,
                                                   shape=shape)
                                 for params, dtype, threads, shape in _cpu_references(op, cpu.cores_logical)]
    # one pass on one thread but for LAPACK's: elsewhere a disturbed one-thread reference only
    # reads slow, and the planner keeps the job on all the cores, as it would without one. A
    # LAPACK job runs on one thread at many shapes (cost/shapes.py), and one disturbed reference
    # there read its alignment class 1.4-1.5x slow: qr of 2048 x 256 on one thread predicted 1.7x
    # its time, in one quick profile of five
    step("cpu kernels again (the faster of two passes)")
    for op in bench_ops.CPU_REFERENCE:
        again = op in bench_ops.ALIGNED_REFERENCE
        cpu.op_benchmarks[op] = [
            first if threads == 1 and not again else
            bench_ops.faster(first, bench_ops.measure(op, params, "cpu", threads or cpu.cores_logical, dtype=dtype,
                                                      shape=shape))
            for first, (params, dtype, threads, shape) in zip(cpu.op_benchmarks[op],
                                                              _cpu_references(op, cpu.cores_logical))]
    # last: np.dot wakes NumPy's BLAS threads, which then compete with torch's for the cores
    step(f"python loop vs vectorized dot (n={plan.loop_n})")
    cpu.python_loop_dot = bench_cpu.python_loop_dot(plan.loop_n)
    cpu.python_loop_s_per_element = cpu.python_loop_dot.loop_s / plan.loop_n


def _cpu_references(op: str, cores: int) -> list[tuple[dict[str, Any], str, int | None, bool]]:
    """(params, dtype, threads, across shapes) of every CPU reference of `op`: those its scale and
    penalties are read from, then those across tall shapes (`bench_ops.shape_references`)."""
    return ([(*ref, False) for ref in bench_ops.references(op, "cpu", cores)]
            + [(*ref, True) for ref in bench_ops.shape_references(op, cores)])


def _cuda_device(gpu: GpuProfile) -> Any:
    import torch

    return torch.device("cuda", gpu.index)


def _bench_gpus(gpus: list[GpuProfile], quick: bool, flags: list[str], step: Callable[[str], None],
                device_for: Callable[[GpuProfile], Any] | None = None) -> None:
    """`device_for` maps a GPU to its torch device; tests pass a CPU stand-in."""
    usable = [g for g in gpus if g.available]
    if not usable:
        return
    if device_for is None:
        try:
            import torch
        except ImportError:
            flags.append("gpus: torch is not installed; GPU microbenchmarks skipped")
            return
        if not torch.cuda.is_available():
            flags.append("gpus: this torch build has no CUDA; GPU microbenchmarks skipped (discovery only)")
            return
        device_for = _cuda_device
    for gpu in usable:
        device = device_for(gpu)
        plan = bench_gpu.GpuBenchPlan.create(quick=quick, memory_free_bytes=gpu.memory_free_bytes)
        if device.type == "cuda" and gpu.sm_count is None:  # NVML does not say; CUDA does
            import torch

            gpu.sm_count = torch.cuda.get_device_properties(device).multi_processor_count
        limits = gpu_ceilings(gpu)
        where = f"gpus[{gpu.index}]"
        for dtype in bench_gpu.GPU_DTYPES:
            curve: dict[int, float] = {}
            for n in plan.gemm_sizes:
                step(f"gpu{gpu.index} gemm {dtype} n={n}")
                value = accept(bench_gpu.gemm_flops(device, dtype, n, min_time_s=plan.min_time_s),
                               limits.flops.get(dtype), f"{where}.gemm_flops.{dtype}[{n}]", flags)
                if value is not None:
                    curve[n] = value
            if curve:
                gpu.gemm_flops[dtype] = curve
                gpu.peak_flops[dtype] = max(curve.values())
        step(f"gpu{gpu.index} memory bandwidth")
        gpu.memory_bandwidth = accept(bench_gpu.device_bandwidth(device, plan.device_bytes, min_time_s=plan.min_time_s),
                                      limits.memory_bandwidth, f"{where}.memory_bandwidth", flags)
        step(f"gpu{gpu.index} host<->device bandwidth")
        for key, value in bench_gpu.transfer_bandwidths(device, plan.transfer_bytes, min_time_s=plan.min_time_s).items():
            setattr(gpu, key, accept(value, limits.h2d_bandwidth, f"{where}.{key}", flags))
        step(f"gpu{gpu.index} pageable copies by size")
        curves = bench_gpu.pageable_curves(device, bench_gpu.PAGEABLE_SIZES, min_time_s=plan.min_time_s / 4)
        for key, largest in (("h2d", gpu.h2d_bandwidth_pageable), ("d2h", gpu.d2h_bandwidth_pageable)):
            if largest:
                curves[key][plan.transfer_bytes] = largest
        gpu.pageable_bandwidth = curves
        step(f"gpu{gpu.index} launch latency")
        gpu.launch_latency_s = bench_gpu.launch_latency_s(device)
        gpu.theoretical_peak_flops = limits.flops
        if device.type == "cuda":
            step(f"gpu{gpu.index} pytorch per-op overhead")
            gpu.torch_op_overhead_s = bench_cpu.torch_op_overhead_s(str(device))
            step(f"gpu{gpu.index} distributed data parallel, per step")
            gpu.ddp_step_s = bench_cpu.ddp_step_s(str(device))
            step(f"gpu{gpu.index} sentinel")
            gpu.sentinel = bench_cpu.sentinel_times(str(device))
            step(f"gpu{gpu.index} top-k, sort and softmax")
            gpu.topk_s_per_element, gpu.sort_s_per_element = bench_cpu.selection_s_per_element(
                str(device), min_time_s=plan.min_time_s)
            gpu.softmax_s_per_element = bench_cpu.softmax_s_per_element(str(device), min_time_s=plan.min_time_s)
            for op in bench_ops.GPU_REFERENCE:
                step(f"gpu{gpu.index} {op} kernel")
                gpu.op_benchmarks[op] = [bench_ops.measure(op, params, "gpu", None, [gpu.index], dtype=dtype)
                                         for params, dtype, _ in bench_ops.references(op, "gpu")]
    if len(usable) > 1:
        step("gpu0 -> gpu1 peer bandwidth")
        a, b = (device_for(g) for g in usable[:2])
        bandwidth = bench_gpu.p2p_bandwidth(a, b, 256 << 20, min_time_s=0.1)
        for gpu in usable:
            gpu.p2p_bandwidth = bandwidth


def _count_steps(cpu: CpuProfile, gpus: list[GpuProfile], quick: bool, cuda: bool) -> int:
    """How many step() calls the benchmarks make, from the same plans they run."""
    cpu_plan = _cpu_plan(cpu, quick)
    gpu_plan = bench_gpu.GpuBenchPlan.create(quick=quick, memory_free_bytes=None)
    usable = [g for g in gpus if g.available]
    cpu_steps = (sum(len(cpu_plan.sizes_for(dtype)) for dtype in cpu_gemm_dtypes(cpu))
                 + CPU_FIXED_STEPS + len(bench_ops.CPU_REFERENCE))
    gpu_steps = (len(bench_gpu.GPU_DTYPES) * len(gpu_plan.gemm_sizes) + GPU_FIXED_STEPS
                 + (4 + len(bench_ops.GPU_REFERENCE) if cuda else 0))  # pytorch op, DDP, sentinel, top-k
    return cpu_steps + len(usable) * gpu_steps + (len(usable) > 1)


def _versions() -> SystemInfo:
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return SystemInfo(os=f"{platform.system()} {platform.release()}", python=platform.python_version(),
                      numpy=np.__version__, torch=torch_version)


def profile_machine(*, quick: bool = False, nvml: ModuleType | None = None, env: Mapping[str, str] | None = None,
                    progress: Progress | None = None, benchmark: bool = True,
                    gpu_device: Callable[[GpuProfile], Any] | None = None) -> NodeProfile:
    """Discover and measure this machine. `benchmark=False` gives discovery only."""
    cpu = discover_cpu()
    fake = fake_gpu_count(env)
    discovery = (GpuDiscovery(note=f"ORCH_FAKE_GPUS={fake}: {fake} CPU stand-in GPU(s), for tests") if fake
                 else discover_gpus(nvml, env))
    system = _versions()
    system.driver_version = discovery.driver_version
    system.cuda_driver_version = discovery.cuda_driver_version
    system.gpu_discovery_note = discovery.note
    flags: list[str] = []
    total = _count_steps(cpu, discovery.gpus, quick, gpu_device is None) if benchmark else 0
    done = 0

    def step(label: str) -> None:
        nonlocal done
        if progress:
            progress(label, done, total)
        done += 1

    if benchmark:
        allocator.steady()  # the allocator every job's process times with (execute/allocator.py)
        _bench_cpu(cpu, quick, flags, step)
        _bench_gpus(discovery.gpus, quick, flags, step, gpu_device)
        if progress:
            progress("done", total, total)
    if fake:
        discovery.gpus = stand_in_gpus(cpu, fake)  # after the CPU's benchmarks: its rates are theirs
    host = this_host()
    return NodeProfile(
        name=host, host=host, kind="measured", quick=quick,
        created=utc_now(),
        orch_version=__version__, system=system, cpu=cpu, gpus=discovery.gpus, flags=flags,
    )
