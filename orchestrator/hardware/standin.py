"""Stand-in GPUs for tests: ORCH_FAKE_GPUS=N makes a process present N CPU devices as GPUs, in
discovery and the profile (here), in planning (they are the profile's GPUs), in the embedded
workers (one per stand-in) and in the kernels (which compute on the CPU). Every stand-in is the
CPU it runs on: its measured rates are its share of the CPU's, its memory an equal share of the
host's."""

from __future__ import annotations

import os
from collections.abc import Mapping

from orchestrator.profile.model import CpuProfile, GpuProfile

# what a stand-in takes over from the CPU it stands on: every measured rate of a device
SHARED = ("peak_flops", "theoretical_peak_flops", "gemm_flops", "memory_bandwidth", "efficiency", "gemm_ramp_s",
          "cache_bandwidth", "torch_op_overhead_s", "ddp_step_s", "topk_s_per_element", "sort_s_per_element", "sentinel",
          "op_benchmarks")


def fake_gpu_count(env: Mapping[str, str] | None = None) -> int:
    """N from ORCH_FAKE_GPUS=N (0 where unset); a bad value is ignored, as CUDA ignores a bad
    CUDA_VISIBLE_DEVICES."""
    value = (os.environ if env is None else env).get("ORCH_FAKE_GPUS", "")
    return int(value) if value.isdigit() else 0


def stand_in_gpus(cpu: CpuProfile, count: int) -> list[GpuProfile]:
    """`count` stand-ins for this CPU, each with an equal share of its cores' measured rates
    (the stand-ins of a node compute side by side on it)."""
    cpu = cpu.share(max(1, cpu.cores_logical // max(count, 1)))
    rates = cpu.model_dump(include=set(SHARED))
    # a GPU's references are read by work alone: the CPU's across tall shapes and thread counts are its own
    rates["op_benchmarks"] = {op: [bench for bench in benches if not bench["shape"]]
                              for op, benches in rates.get("op_benchmarks", {}).items()}
    memory = cpu.memory_total_bytes // max(count, 1)  # the share keeps the host's memory: divided here
    copy = cpu.memory_bandwidth  # host to "device" is a copy within host memory
    return [GpuProfile(index=i, name=f"CPU stand-in {i} (ORCH_FAKE_GPUS)", stand_in=True, memory_total_bytes=memory,
                       memory_free_bytes=memory, h2d_bandwidth=copy, h2d_bandwidth_pageable=copy, d2h_bandwidth=copy,
                       d2h_bandwidth_pageable=copy, launch_latency_s=cpu.torch_call_s, **rates)
            for i in range(count)]
