"""Property tests of the cost model and planner (hypothesis), over every op and bundled profile."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from orchestrator import ops
from orchestrator.cost.candidates import candidates
from orchestrator.cost.model import predict
from orchestrator.cost.rates import gemm_rate
from orchestrator.plan.hardware import hardware_for
from orchestrator.plan.planner import busy_s, make_plan
from orchestrator.plan.schedule import list_schedule, makespan
from orchestrator.placement import Placement
from orchestrator.profile import store
from orchestrator.workload.model import Job, Workload

PROFILES = ["h100-sxm", "h100-sxm-8", "a100-80gb", "l4", "t4", "cpu-c7i-8xlarge", "cpu-c7i-8xlarge-x4", "h100-sxm-8-x4"]
HARDWARE = {name: hardware_for(store.resolve(name)) for name in PROFILES}
SIZES = st.integers(1, 1 << 16)


@st.composite
def jobs(draw, max_size: int = 1 << 16):
    op = ops.get(draw(st.sampled_from(ops.names())))
    params = {}
    for name, spec in op.params.items():
        if spec.kind == "size_list":
            params[name] = draw(st.lists(st.integers(1, 4096), min_size=1, max_size=3))
        else:
            params[name] = draw(st.integers(1, max_size if name not in ("iterations", "epochs") else 20))
    if op.name == "lstsq" and params["m"] < params["n"]:
        params["m"], params["n"] = params["n"], params["m"]
    dtype = draw(st.sampled_from(op.dtypes))
    data = draw(st.sampled_from(["host", "device"]))
    return Job(name="j", op=op.name, params=params, dtype=dtype, data=data)


@settings(max_examples=300, deadline=None)
@given(jobs(), st.sampled_from(PROFILES), st.data())
def test_more_work_never_predicts_less_time(job, profile, data):
    hw = HARDWARE[profile]
    op = ops.get(job.op)
    # batch_size is not work: the same samples in larger batches may well run faster
    grow = data.draw(st.sampled_from([p for p, s in op.params.items() if s.kind == "size" and p != "batch_size"]))
    factor = data.draw(st.integers(2, 16))
    bigger_params = {**job.params, grow: job.params[grow] * factor}
    if op.name == "lstsq" and bigger_params["m"] < bigger_params["n"]:
        return
    bigger = Job(**{**job.__dict__, "params": bigger_params})
    for placement in candidates(hw):
        small, large = predict(job, placement, hw), predict(bigger, placement, hw)
        if small.feasible and large.feasible:
            assert large.predicted_s >= small.predicted_s * (1 - 1e-9), (placement, grow, small.terms, large.terms)


@settings(max_examples=200, deadline=None)
@given(jobs(max_size=1 << 20), st.sampled_from(PROFILES), st.sampled_from(["time", "cost", "energy"]))
def test_chosen_is_feasible_and_minimises_the_objective(job, profile, objective):
    hw = HARDWARE[profile]
    preds = [predict(job, p, hw) for p in candidates(hw)]
    assume(any(p.feasible for p in preds))
    plan = make_plan(Workload("w", "w.yaml", "", [job]), hw, objective)
    (jp,) = plan.jobs
    assert jp.chosen.feasible
    best = min(p.objective_value(objective) for p in jp.candidates if p.feasible)
    assert jp.chosen.objective_value(objective) == pytest.approx(best)
    assert all(p.feasible or p.note for p in jp.candidates)


@settings(max_examples=60, deadline=None)
@given(st.lists(jobs(max_size=1 << 12), min_size=2, max_size=25), st.sampled_from(PROFILES))
def test_batch_never_slower_than_each_job_at_its_own_best(batch, profile):
    hw = HARDWARE[profile]
    named = [Job(**{**job.__dict__, "name": f"j{i}"}) for i, job in enumerate(batch)]
    plan = make_plan(Workload("w", "w.yaml", "", named), hw, "time")
    placed = [jp for jp in plan.jobs if jp.chosen is not None]
    for jp in plan.jobs:
        assert jp.chosen is None and not any(p.feasible for p in jp.candidates) or jp.chosen.feasible
    assume(placed)
    own_best = [min((p for p in jp.candidates if p.feasible), key=lambda p: p.predicted_s) for jp in placed]
    own = list_schedule([(str(i), [(best.placement, busy_s(jp.job, best), best.threads)])
                         for i, (jp, best) in enumerate(zip(placed, own_best))], hw.nodes, len(hw.gpus), choose=False,
                        cores_per_node=hw.node.cpu.cores_logical)
    assert plan.makespan_s <= makespan(own) * (1 + 1e-9)
    assert plan.makespan_s >= max(jp.slot.finish_s - jp.slot.start_s for jp in placed) - 1e-12


def test_infeasible_when_too_big_for_every_gpu():
    hw = HARDWARE["h100-sxm"]
    huge = Job(name="huge", op="matmul", params={"m": 100_000, "n": 100_000, "k": 100_000})
    gpu = predict(huge, Placement("gpu", 1), hw)
    assert not gpu.feasible and "exceeds" in gpu.note


def test_gemm_curve_time_is_monotone_even_with_a_noisy_point():
    from orchestrator.profile.model import CpuProfile

    cpu = CpuProfile(cores_physical=1, cores_logical=1, memory_total_bytes=1 << 30,
                     gemm_flops={"float32": {64: 1e9, 128: 1e12, 256: 2e11}})
    times = [2 * n**3 / gemm_rate(cpu, "float32", n) for n in (32, 64, 100, 128, 200, 256, 512)]
    assert all(later >= earlier * (1 - 1e-9) for earlier, later in zip(times, times[1:]))
    assert math.isfinite(times[-1])


def test_one_slow_small_sample_does_not_drag_the_curve_down():
    from orchestrator.profile.model import CpuProfile

    cpu = CpuProfile(cores_physical=1, cores_logical=1, memory_total_bytes=1 << 30,
                     gemm_flops={"bfloat16": {64: 6.6e7, 256: 1.56e11, 1024: 1.67e11}})
    assert gemm_rate(cpu, "bfloat16", 256) == pytest.approx(1.56e11)
    assert gemm_rate(cpu, "bfloat16", 64) >= 1.56e11 / 64  # raised to keep time monotone


def test_host_data_moves_at_the_measured_pageable_rate_for_its_size():
    """`data: host` inputs are ordinary host memory: the copy runs at the profile's pageable rate
    for that size (measured 6.2 GB/s of 55 pinned on a lent H100 VM), and a larger copy never
    predicts less time than a smaller one, even where the measured curve dips."""
    from orchestrator.cost.rates import d2h_bandwidth, h2d_bandwidth
    from orchestrator.profile.model import GpuProfile

    mib = 1 << 20
    gpu = GpuProfile(index=0, name="g", h2d_bandwidth=55e9, h2d_bandwidth_pageable=6e9,
                     pageable_bandwidth={"h2d": {mib: 20e9, 8 * mib: 10e9, 64 * mib: 6e9},
                                         "d2h": {mib: 1e9, 64 * mib: 3e9}})
    assert h2d_bandwidth(gpu) == pytest.approx(55e9)
    assert h2d_bandwidth(gpu, nbytes=mib) == pytest.approx(20e9)
    assert h2d_bandwidth(gpu, nbytes=512 * mib) == pytest.approx(6e9)
    assert 6e9 < h2d_bandwidth(gpu, nbytes=32 * mib) < 10e9
    sizes = [mib * k for k in (0.5, 1, 2, 8, 16, 64, 100, 1000)]
    for bandwidth in (lambda n: h2d_bandwidth(gpu, nbytes=n), lambda n: d2h_bandwidth(gpu, nbytes=n)):
        times = [n / bandwidth(n) for n in sizes]
        assert all(later >= earlier * (1 - 1e-9) for earlier, later in zip(times, times[1:]))
    without_curve = GpuProfile(index=0, name="g", h2d_bandwidth=55e9, d2h_bandwidth=50e9)
    assert d2h_bandwidth(without_curve, nbytes=mib) < d2h_bandwidth(without_curve)


def test_sorting_is_priced_at_the_measured_topk_rate_and_grows_with_k():
    """A top-k compares rather than computes: its elements at the profile's measured per-element
    rate for that k (log-linear between measured ks, linear beyond, never above a full sort),
    and nothing where a profile measured none."""
    from orchestrator.cost.rates import selection_s
    from orchestrator.ops import Selection
    from orchestrator.profile.model import GpuProfile

    device = GpuProfile(index=0, name="g", topk_s_per_element={1: 1e-9, 16: 2e-9, 64: 4e-9}, sort_s_per_element=2e-8)
    one = [selection_s(device, (Selection(1e6, k),)) for k in (1, 4, 16, 64, 256, 100_000)]
    assert one[0] == pytest.approx(1e-3) and one[2] == pytest.approx(2e-3) and one[3] == pytest.approx(4e-3)
    assert all(later >= earlier for earlier, later in zip(one, one[1:]))
    assert one[-1] == pytest.approx(selection_s(device, (Selection(1e6, None),))) == pytest.approx(2e-2)
    assert selection_s(GpuProfile(index=0, name="bare"), (Selection(1e6, 16),)) == 0.0


def test_a_call_within_atens_grain_runs_on_one_thread():
    """ATen keeps a loop of at most 32,768 elements on one thread: a small top-k or softmax on
    a 2-core CPU runs at half the rate the profile measured on both cores, and a larger one
    never takes less time than the largest small one."""
    from orchestrator.cost.rates import selection_s, softmax_s
    from orchestrator.ops import Selection
    from orchestrator.profile.model import CpuProfile, GpuProfile

    cpu = CpuProfile(cores_logical=2, cores_physical=2, memory_total_bytes=2**34, topk_s_per_element={16: 1e-9},
                     softmax_s_per_element=3e-10)
    assert selection_s(cpu, (Selection(32768, 16),)) == pytest.approx(2 * 32768e-9)
    assert selection_s(cpu, (Selection(40000, 16),)) == pytest.approx(2 * 32768e-9)
    assert selection_s(cpu, (Selection(100_000, 16),)) == pytest.approx(100_000e-9)
    assert softmax_s(cpu, 1000) == pytest.approx(2 * 3e-7) and softmax_s(cpu, 1e6) == pytest.approx(3e-4)
    gpu = GpuProfile(index=0, name="g", topk_s_per_element={16: 1e-9})
    assert selection_s(gpu, (Selection(1000, 16),)) == pytest.approx(1e-6)


def test_a_cpu_call_costs_a_torch_call_through_the_harness_where_measured():
    """The kernels call torch, not NumPy: a tiny CPU job pays the measured torch call
    (`torch_call_s`), a profile without it NumPy's dispatch as before; training keeps autograd's
    per-op figure."""
    from orchestrator.cost.rates import call_overhead_s
    from orchestrator.ops import Rate
    from orchestrator.profile.model import CpuProfile

    old = CpuProfile(cores_physical=2, cores_logical=2, memory_total_bytes=1 << 30, dispatch_overhead_s=3e-7,
                     torch_op_overhead_s=1.5e-5)
    new = old.model_copy(update={"torch_call_s": 4e-6})
    assert call_overhead_s(old, 2, Rate.STREAM) == (pytest.approx(6e-7), 0.0)
    assert call_overhead_s(new, 2, Rate.STREAM) == (pytest.approx(8e-6), 0.0)
    assert call_overhead_s(new, 6, Rate.GEMM, eager=True)[0] == pytest.approx(2.4e-5)
    assert call_overhead_s(old, 6, Rate.GEMM, eager=True)[0] == pytest.approx(9e-5)
    assert call_overhead_s(new, 9, Rate.TRAINING)[0] == pytest.approx(1.35e-4)


H200_VM = store.resolve("docs/data/profile-h200-vm.yaml")


def _reference_job(op: str, bench) -> Job:
    return Job(name="ref", op=op, params=bench.params, dtype=bench.dtype, data=bench.data)


def test_each_op_predicts_its_largest_reference_as_measured():
    """The op scale is measured at the profile's reference runs: at the largest (the one the
    monotone cleaning never lowers) the model gives back the measured time, launch-bound GPU
    training included (its launches are scaled with its work)."""
    hw = hardware_for(H200_VM, calibrated=False)
    for kind, device in (("cpu", hw.node.cpu), ("gpu", hw.gpus[0])):
        for op, benches in device.op_benchmarks.items():
            largest = max(benches, key=lambda b: predict(_reference_job(op, b), Placement(kind, int(kind == "gpu")), hw,
                                                         scaled=False, calibrated=False).predicted_s)
            got = predict(_reference_job(op, largest), Placement(kind, int(kind == "gpu")), hw, calibrated=False)
            assert got.predicted_s == pytest.approx(largest.measured_s, rel=0.01), (kind, op)
    # launch-bound: 40 steps of a small MLP. Half its width takes as many launches per step,
    # so about as long (an H100 VM: 1.0-1.4 ms a step at any such width); read off the work
    # alone it came out 3-5x short
    small = hw.gpus[0].op_benchmarks["train_mlp"][0]
    narrow = Job(name="n", op="train_mlp", data="device",
                 params={**small.params, "features": small.params["features"] // 2,
                         "hidden": [h // 2 for h in small.params["hidden"]]})
    got = predict(narrow, Placement("gpu", 1), hw, calibrated=False)
    assert got.terms["dispatch_s"] > got.terms["compute_s"]
    assert 0.7 * small.measured_s < got.predicted_s <= small.measured_s * 1.01


def test_float64_takes_its_own_level_from_its_references():
    """float64 kernels keep the shape of the op's scale over sizes at the level their own
    references measured; without float64 references float64 reads float32's scale, and the
    float32 predictions never change."""
    from orchestrator.profile.model import OpBenchmark

    base = hardware_for(H200_VM, calibrated=False)
    job = Job(name="q", op="qr", params={"m": 3000, "n": 1500}, dtype="float64", data="device")
    f32 = Job(name="q", op="qr", params={"m": 3000, "n": 1500}, dtype="float32", data="device")
    before = predict(job, Placement("gpu", 1), base, calibrated=False)
    node = H200_VM.model_copy(deep=True)
    gpu = node.gpus[0]
    doubled = []
    for bench in gpu.op_benchmarks["qr"][:2]:  # float64 measured at twice what float32's scale says
        ref = Job(name="r", op="qr", params=bench.params, dtype="float64", data=bench.data)
        doubled.append(OpBenchmark(params=bench.params, dtype="float64", data=bench.data,
                                   measured_s=2 * predict(ref, Placement("gpu", 1), base, calibrated=False).predicted_s))
    gpu.op_benchmarks["qr"] = [*gpu.op_benchmarks["qr"], *doubled]
    hw = hardware_for(node, calibrated=False)
    assert hw.float64_ratios[("gpu", "qr")] == pytest.approx(2.0, rel=0.05)
    after = predict(job, Placement("gpu", 1), hw, calibrated=False)
    work = max(after.terms[t] for t in ("compute_s", "memory_s", "dispatch_s"))
    assert work == pytest.approx(2 * max(before.terms[t] for t in ("compute_s", "memory_s", "dispatch_s")), rel=0.05)
    assert predict(f32, Placement("gpu", 1), hw, calibrated=False).predicted_s == pytest.approx(
        predict(f32, Placement("gpu", 1), base, calibrated=False).predicted_s)
    assert ("cpu", "qr") not in hw.float64_ratios  # this profile has no float64 CPU references


def test_below_its_smallest_reference_a_scale_follows_its_trend_within_bounds():
    """A kernel's efficiency keeps falling as it shrinks: below the smallest reference the scale
    follows the two smallest references' trend in log-log, at most 0.8 steep (more work never
    predicts less time) and at most 4x; where the scale grows with work it stays flat."""
    from orchestrator.cost.rates import SMALLER_SCALE_AT_MOST, scale_at

    falling = [(1e-3, 2.0), (1e-2, 1.0)]  # slope -0.3 in log-log
    assert scale_at(falling, 1e-3) == pytest.approx(2.0)
    assert scale_at(falling, 1e-4) == pytest.approx(2.0 * 10 ** 0.30103, rel=1e-3)
    assert scale_at(falling, 1e-12) == pytest.approx(2.0 * SMALLER_SCALE_AT_MOST)
    steep = [(1e-3, 100.0), (1e-2, 1.0)]  # slope -2: clamped, so scale x work still grows
    works = [10 ** (-k / 4) for k in range(40, 11, -1)]
    scaled = [scale_at(steep, w) * w for w in works]
    assert all(b >= a for a, b in zip(scaled, scaled[1:]))
    rising = [(1e-3, 1.0), (1e-2, 2.0)]
    assert scale_at(rising, 1e-5) == pytest.approx(1.0)
    assert scale_at(falling, 5e-2) == pytest.approx(1.0) and scale_at([(1e-3, 3.0)], 1e-6) == pytest.approx(3.0)
