from __future__ import annotations

import pytest
import torch

from orchestrator.hardware import bench_cpu, bench_gpu, bench_ops, profiler
from orchestrator.profile import store
from tests.fakes.nvml import scenario


def test_discovery_only_with_fake_gpus():
    result = profiler.profile_machine(nvml=scenario("one_failing_gpu"), env={}, benchmark=False)
    assert [g.available for g in result.gpus] == [True, False, True]
    assert result.cpu.peak_flops == {}


def test_cuda_less_torch_profiles_gpus_by_discovery_only(tiny_plans):
    result = profiler.profile_machine(quick=True, nvml=scenario("one_gpu"), env={})
    assert result.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert result.gpus[0].peak_flops == {}
    assert any("no CUDA" in flag for flag in result.flags)
    assert result.cpu.peak_flops["float32"] > 0
    assert set(result.cpu.op_benchmarks) == {"solve", "fft"}
    assert result.cpu.torch_op_overhead_s > 0
    assert 1e-12 < result.cpu.softmax_s_per_element < 1e-6  # this VM: 0.3 ns an element on two cores
    # the toy plan's "memory" arrays fit in cache, so the cache figure may not beat them: then it
    # is flagged and left out rather than saved
    assert result.cpu.cache_bandwidth or any("cache_bandwidth" in flag for flag in result.flags)


def test_full_gpu_path_on_cpu_stand_in(tiny_plans):
    steps = []
    result = profiler.profile_machine(
        quick=True, nvml=scenario("eight_gpus_nvlink"), env={"CUDA_VISIBLE_DEVICES": "0,1"},
        gpu_device=lambda gpu: torch.device("cpu"), progress=lambda label, done, total: steps.append((done, total)))
    assert len(result.gpus) == 2
    for gpu in result.gpus:
        assert set(gpu.gemm_flops) == set(bench_gpu.GPU_DTYPES)
        assert gpu.memory_bandwidth and gpu.h2d_bandwidth and gpu.d2h_bandwidth and gpu.launch_latency_s
        assert gpu.h2d_bandwidth_pageable and gpu.d2h_bandwidth_pageable
        for direction in ("h2d", "d2h"):
            assert len(gpu.pageable_bandwidth[direction]) == len(bench_gpu.PAGEABLE_SIZES) + 1
        assert gpu.p2p_bandwidth
        assert gpu.theoretical_peak_flops["bfloat16"] == pytest.approx(989.5e12)
    assert steps[-1][0] == steps[-1][1], "the progress bar ends full"
    assert len(steps) - 1 == steps[-1][1], "one step per benchmark, counted from the same plans"
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)


def test_impossible_figures_are_flagged(tiny_plans, monkeypatch):
    monkeypatch.setattr(bench_cpu, "gemm_flops", lambda dtype, n, min_time_s: 1e18)
    result = profiler.profile_machine(quick=True, nvml=scenario("zero_gpus"), env={})
    assert result.cpu.peak_flops == {} and result.cpu.gemm_flops == {}
    assert any("exceeds the theoretical" in flag for flag in result.flags)


def test_saved_profile_round_trips(tiny_plans, orch_home):
    result = profiler.profile_machine(quick=True, nvml=scenario("mig_enabled"), env={})
    path = store.save(result)
    assert path.parent == orch_home / "profiles"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert store.load_path(path) == result
    assert store.newest_for_host() == result


def test_each_added_reference_is_read_where_the_others_leave_the_scale_to_a_trend():
    """The third reference is read below the op's largest (below every other but k-means', whose
    first is of another shape, and the vector kernels' and the GEMM's, between their two), at a
    size of no alignment class (an aligned one would only measure a penalty, cost/alignment.py),
    timed on all the cores, on one thread and in float64 where the op has float64 references."""
    from orchestrator.cost.alignment import alignment
    from orchestrator.ops import get

    for name, small in bench_ops.SMALLER_REFERENCE.items():
        op = get(name)
        others = [params for params in bench_ops.CPU_REFERENCE[name] if params is not small]
        between = name in ("dot", "sum", "axpy", "matmul")
        below = others[-1:] if name == "kmeans" or between else others
        assert all(op.flops(small) < op.flops(params) for params in below), name
        assert not between or op.flops(small) > op.flops(others[0]), name
        assert alignment(op, small) == 0, name
        runs = [(dtype, threads) for params, dtype, threads in bench_ops.references(name, "cpu", cores=2) if params is small]
        assert ("float32", None) in runs and ("float32", 1) in runs, name
        assert (("float64", None) in runs) == (name in bench_ops.FLOAT64_OPS), name
        assert (("float64", 1) in runs) == (name in bench_ops.ALIGNED_REFERENCE), name


def test_float64_is_timed_on_one_thread_at_the_ops_unaligned_sizes_where_the_cpu_has_more_than_one():
    """float64's own one-thread scale (cost/model.py, `float64_scales`): each LAPACK
    factorisation's unaligned CPU references once more on one thread, where there is more than
    one core (no other op ran faster on one thread at any reference in three profiles here);
    never on a GPU nor a one-core CPU, and never at the aligned sizes (those fall back to the
    all-core float64 penalties)."""
    from orchestrator.cost.alignment import alignment
    from orchestrator.ops import get

    for name in bench_ops.CPU_REFERENCE:
        one64 = [params for params, dtype, threads in bench_ops.references(name, "cpu", cores=2)
                 if (dtype, threads) == ("float64", 1)]
        if name in bench_ops.ALIGNED_REFERENCE:
            assert one64 == bench_ops.CPU_REFERENCE[name], name
            assert all(alignment(get(name), params) == 0 for params in one64), name
        else:
            assert one64 == [], name
        assert not [t for _, d, t in bench_ops.references(name, "cpu", cores=1) if t == 1], name
        if name in bench_ops.GPU_REFERENCE:
            assert not [t for _, d, t in bench_ops.references(name, "gpu") if t == 1], name
