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


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_cpu_gemm_reports_plausible_flops(dtype):
    flops = bench_cpu.gemm_flops(dtype, 64, min_time_s=0.01)
    assert 1e7 < flops < 1e14


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
    plan = bench_cpu.CpuBenchPlan.for_machine(quick=True, llc_bytes=260 << 20, available_bytes=24 << 30)
    assert plan.stream_bytes >= 2 * (260 << 20)
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
