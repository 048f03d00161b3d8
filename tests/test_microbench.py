"""Microbenchmarks run for real, on tiny sizes; the GPU ones on a CPU torch device as stand-in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orchestrator.hardware import bench_cpu, bench_gpu
from orchestrator.hardware.peaks import PCIE_LANE_BYTES_PER_S, accept, gpu_ceilings, gpu_datasheet
from orchestrator.hardware.timing import best_seconds
from orchestrator.profile.model import GpuProfile, PcieLink


def test_best_seconds_is_per_call():
    calls = []
    seconds = best_seconds(lambda: calls.append(1), min_time_s=0.0, min_samples=2)
    assert 0 < seconds < 1e-3
    assert len(calls) >= 4


# The most any x86 core retires per cycle: two 512-bit FMA units (8 float64 or 16 float32 lanes,
# 2 FLOPs each, twice), and for bfloat16 AMX's 1024 multiply-adds (Intel optimization manual).
FLOPS_PER_CYCLE = {"float64": 32, "float32": 64, "bfloat16": 2048}
MAX_CLOCK_HZ = 6e9  # above every shipping x86 turbo clock


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_cpu_gemm_flops_agree_with_an_independent_timing_and_the_silicon(dtype):
    """The profiler's GEMM rate against the same product timed here with a plain loop (the
    median of 30), and under what the cores can physically retire."""
    import os
    import statistics
    import time

    import torch

    n = 256
    flops = bench_cpu.gemm_flops(dtype, n, min_time_s=0.05)
    a = torch.rand(n, n).to(getattr(torch, dtype))
    b = torch.rand(n, n).to(getattr(torch, dtype))
    a @ b
    times = []
    for _ in range(30):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    independent = 2 * n**3 / statistics.median(times)
    assert independent / 3 < flops < independent * 3
    assert flops < os.cpu_count() * MAX_CLOCK_HZ * FLOPS_PER_CYCLE[dtype]


def test_torch_op_overhead_leaves_out_building_the_model(monkeypatch):
    """The per-op cost of eager training comes from the difference of two step counts: making
    the model (here slowed by 50 ms) is paid by both and cancels."""
    import time

    from orchestrator import ops

    plain = bench_cpu.torch_op_overhead_s("cpu")
    kernel = ops.get("train_mlp")
    build = type(kernel)._model

    def slow_build(self, *args, **kwargs):
        time.sleep(0.05)
        return build(self, *args, **kwargs)

    monkeypatch.setattr(type(kernel), "_model", slow_build)
    slowed = bench_cpu.torch_op_overhead_s("cpu")
    # 50 ms over 40 steps of 24 ops would add 52 us an op; what is left is the machine's noise
    assert slowed < plain + 20e-6 and plain < 1e-4


def test_gpu_op_benchmarks_warm_up_before_timing(monkeypatch):
    """A GPU's first 2-3 executions run 2-3x slow: the op benchmarks time after three warm-ups."""
    from orchestrator.hardware import bench_ops
    from orchestrator.execute import harness

    monkeypatch.setenv("ORCH_FAKE_GPUS", "1")
    seen = []
    real = harness.timed

    def recording(once, warmup, repeats, **options):
        seen.append((warmup, repeats))
        return real(once, warmup, repeats, **options)

    monkeypatch.setattr(harness, "timed", recording)
    bench_ops.measure("cholesky", {"n": 64}, "gpu", None)
    bench_ops.measure("cholesky", {"n": 64}, "cpu", 1)
    assert seen[0][0] >= 3 and seen[0][1] >= 3 and seen[1] == (1, 2)


def test_cpu_gemm_larger_is_not_slower_per_flop():
    small = bench_cpu.gemm_flops("float32", 16, min_time_s=0.02)
    large = bench_cpu.gemm_flops("float32", 256, min_time_s=0.02)
    assert large > small


def test_stream_counts_read_and_write():
    copy, triad = bench_cpu.stream_bandwidth(8 << 20, min_time_s=0.01)
    assert 1e8 < copy < 1e13 and 1e8 < triad < 1e13


def test_python_loop_is_slower_than_numpy():
    result = bench_cpu.python_loop_dot(20_000)
    assert result.speedup > 5
    assert result.speedup == pytest.approx(result.loop_s / result.vectorized_s)


def test_stream_arrays_exceed_the_llc():
    plan = bench_cpu.CpuBenchPlan.for_machine(quick=True, llc_bytes=200 << 20, available_bytes=24 << 30)
    assert plan.stream_bytes >= 2 * (200 << 20)
    vm = bench_cpu.CpuBenchPlan.for_machine(quick=True, llc_bytes=480 << 20, available_bytes=24 << 30)
    assert 480 << 20 < vm.stream_bytes <= 512 << 20  # a VM's host-wide L3: once, not twice (quick)
    huge = bench_cpu.CpuBenchPlan.for_machine(quick=True, llc_bytes=1152 << 20, available_bytes=96 << 30)
    assert huge.stream_bytes >= 1152 << 20
    full = bench_cpu.CpuBenchPlan.for_machine(quick=False, llc_bytes=64 << 20, available_bytes=24 << 30)
    assert full.stream_bytes >= 4 * (64 << 20)
    tight = bench_cpu.CpuBenchPlan.for_machine(quick=False, llc_bytes=64 << 20, available_bytes=1 << 30)
    assert tight.stream_bytes <= (1 << 30) // 8


@pytest.mark.parametrize("dtype", bench_gpu.GPU_DTYPES)
def test_gpu_gemm_code_on_cpu_stand_in(dtype):
    flops = bench_gpu.gemm_flops(torch.device("cpu"), dtype, 32, min_time_s=0.01)
    assert flops > 1e6


def test_gpu_bandwidth_code_on_cpu_stand_in():
    device = torch.device("cpu")
    assert bench_gpu.device_bandwidth(device, 4 << 20, min_time_s=0.01) > 1e8
    transfers = bench_gpu.transfer_bandwidths(device, 4 << 20, min_time_s=0.01)
    assert set(transfers) == {"h2d_bandwidth", "h2d_bandwidth_pageable", "d2h_bandwidth", "d2h_bandwidth_pageable"}
    assert all(v > 1e8 for v in transfers.values())
    assert 0 < bench_gpu.launch_latency_s(device, samples=20) < 1e-2
    assert bench_gpu.p2p_bandwidth(device, device, 4 << 20, min_time_s=0.01) > 1e8


def test_measurement_above_ceiling_is_flagged_not_saved():
    flags: list[str] = []
    assert accept(5.0, 10.0, "x", flags) == 5.0 and flags == []
    assert accept(11.0, 10.0, "cpu.gemm_flops.float32[64]", flags) is None
    assert "cpu.gemm_flops.float32[64]" in flags[0] and "not saved" in flags[0]
    assert accept(1e30, None, "unknown ceiling", flags) == 1e30


def test_gpu_ceilings_from_datasheet_and_pcie():
    gpu = GpuProfile(index=0, name="NVIDIA H100 80GB HBM3", pcie=PcieLink(generation_max=5, width_max=16))
    ceilings = gpu_ceilings(gpu)
    assert ceilings.flops["bfloat16"] == pytest.approx(989.5e12)
    assert ceilings.memory_bandwidth == pytest.approx(3.35e12)
    assert ceilings.h2d_bandwidth == pytest.approx(16 * PCIE_LANE_BYTES_PER_S[5])
    assert gpu_datasheet("Some Unknown GPU") is None
    assert np.isclose(gpu_datasheet("Tesla T4").memory_bandwidth, 320e9)


def test_a_reference_timing_skips_the_float64_check():
    """The profile's op references time the kernel alone: the check (qr's Q R rebuilt in float64)
    took as long as the timed executions and made the quick profile run past a minute."""
    from orchestrator.execute.harness import execute
    from orchestrator.execute.task import Task

    assert execute(Task("r", "qr", {"m": 64, "n": 16}, checked=False)).check is None
    assert isinstance(execute(Task("r", "qr", {"m": 64, "n": 16})).check, float)
