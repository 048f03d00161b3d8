"""LAPACK's tall factorisations by shape (cost/shapes.py): the profile's references across tall
shapes on each thread count, what they ran over the op's scale read between them, and the
planner's thread count from them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestrator.cost import shapes
from orchestrator.cost.candidates import candidates
from orchestrator.cost.model import predict
from orchestrator.hardware import bench_ops, profiler
from orchestrator.ops import get
from orchestrator.placement import Placement
from orchestrator.plan.hardware import hardware_for
from orchestrator.profile import store
from orchestrator.profile.model import OpBenchmark
from orchestrator.workload.model import Job
from tests.fakes.nvml import scenario

ROOT = Path(__file__).resolve().parent.parent
GRID = [(m, n) for m in (1000, 2000, 3000, 4000) for n in (125, 250)]


def test_a_shapes_factor_is_read_between_grid_points_and_fades_beyond_the_grid():
    points = [(m, n, 4.0 if m in (2000, 3000) else 1.0) for m, n in GRID]
    assert shapes.factor(points, {"m": 2000, "n": 125}) == pytest.approx(4.0)
    assert shapes.factor(points, {"m": 4000, "n": 250}) == pytest.approx(1.0)
    # log-linear between grid points, in each dimension
    assert shapes.factor(points, {"m": 3464, "n": 180}) == pytest.approx(2.0, rel=1e-3)  # halfway to 4000
    assert shapes.factor(points, {"m": 1414, "n": 250}) == pytest.approx(2.0, rel=1e-3)
    assert shapes.factor(points, {"m": 2500, "n": 180}) == pytest.approx(4.0)
    # beyond the grid the nearest edge's, faded over an octave (summed over both dimensions)
    assert shapes.factor(points, {"m": 2000, "n": 500}) == pytest.approx(1.0)
    assert shapes.factor(points, {"m": 2000, "n": 354}) == pytest.approx(4 ** (1 - math.log2(354 / 250)), rel=1e-6)  # ~2
    assert shapes.factor(points, {"m": 2000, "n": 90}) == pytest.approx(4 ** (1 - math.log2(125 / 90)), rel=1e-6)
    # without a full grid around the shape, or without the shape's dimensions, no factor
    assert shapes.factor(points[1:], {"m": 1500, "n": 125}) == 1.0
    assert shapes.factor([], {"m": 2000, "n": 125}) == 1.0
    assert shapes.factor(points, {"n": 125}) == 1.0


def _reference(bare, op: str, params: dict, scale: float, dtype: str, threads: int | None, shape: bool) -> OpBenchmark:
    """A reference whose work takes `scale` times what the model without a scale says, on these threads."""
    placement = candidates(bare)[0]
    raw = predict(Job("r", op, params, dtype), placement, bare, scaled=False, calibrated=False)
    work = max(raw.terms[t] for t in ("compute_s", "memory_s", "dispatch_s"))
    return OpBenchmark(params=params, dtype=dtype, data="host", threads=threads, shape=shape,
                       measured_s=raw.predicted_s + (scale - 1) * work)


def _lstsq_profile(window: float, aligned: dict | None = None):
    """This VM's measured profile with lstsq's CPU references replaced: its scale and its
    one-thread scale flat at 2 and 3 (one thread slower everywhere), and references across
    shapes, where all the cores run `window` times the scale at m = 2000-3000 (one thread: its
    scale), and `aligned` references (params -> ratio to the scale, on all the cores)."""
    node = store.resolve(str(ROOT / "docs/data/profile-vm-20261128.yaml")).model_copy(deep=True)
    bare = hardware_for(node, calibrated=False)
    refs = [_reference(bare, "lstsq", params, 2.0, "float32", None, False) for params in bench_ops.CPU_REFERENCE["lstsq"]]
    refs += [_reference(bare, "lstsq", params, 3.0, "float32", 1, False) for params in bench_ops.CPU_REFERENCE["lstsq"]]
    for threads, scale in ((None, 2.0), (1, 3.0)):
        for m, n in GRID:
            inside = threads is None and m in (2000, 3000)
            refs.append(_reference(bare, "lstsq", {"m": m, "n": n}, scale * (window if inside else 1.0), "float32",
                                   threads, True))
    for params, ratio in (aligned or {}).items():
        refs.append(_reference(bare, "lstsq", dict(params), 2.0 * ratio, "float32", None, False))
    node.cpu.op_benchmarks["lstsq"] = refs
    return hardware_for(node, calibrated=False)


def test_a_tall_shape_that_runs_slow_on_all_the_cores_runs_on_one_thread():
    """On this VM's MKL lstsq of 2000 x 250 float32 took 30 ms on both cores and 4.5 on one,
    of 4000 x 250 16 and 10: the op's scale, read by work, cannot say so; its references across
    shapes do, and the planner sends such a job to one thread, where elsewhere all the cores win."""
    plain, windowed = _lstsq_profile(1.0), _lstsq_profile(4.0)
    assert windowed.shape_ratios[("cpu", "lstsq", "float32")]
    assert ("cpu", "lstsq", "float64") not in windowed.shape_ratios
    inside, outside = Job("l", "lstsq", {"m": 2500, "n": 200}), Job("l", "lstsq", {"m": 8000, "n": 500})
    cpu = Placement("cpu")
    assert predict(inside, cpu, plain, calibrated=False).threads is None
    chosen = predict(inside, cpu, windowed, calibrated=False)
    assert chosen.threads == 1 and chosen.note == "one thread: all its cores 2.7x slower"  # 2 x 4 against 3
    assert predict(inside, cpu, windowed, calibrated=False, threads=1).note is None  # asked, not chosen
    assert predict(outside, cpu, windowed, calibrated=False).threads is None
    on_all = [predict(inside, cpu, hw, calibrated=False, threads=0) for hw in (plain, windowed)]
    work = [max(p.terms["compute_s"], p.terms["memory_s"]) for p in on_all]
    assert work[1] == pytest.approx(4.0 * work[0], rel=1e-6)
    assert on_all[1].penalty == pytest.approx(4.0 * on_all[0].penalty, rel=1e-6)  # the fit tier divides it out
    # float64 reads float32's where its own were not timed
    assert predict(Job("l", "lstsq", {"m": 2500, "n": 200}, "float64"), cpu, windowed, calibrated=False).threads == 1
    # the references across shapes make neither the scale nor a penalty
    assert windowed.op_scales[("cpu", "lstsq")] == plain.op_scales[("cpu", "lstsq")]
    assert windowed.alignment_penalties == plain.alignment_penalties


def test_an_aligned_reference_inside_the_window_measures_its_alignment_not_its_shape():
    """lstsq's aligned references (2000 x 128 among them) sit where both cores run slow: what
    their shape costs is the shape's, and only the rest is the alignment class's penalty."""
    aligned = {(("m", 2000), ("n", 128)): 4.0 * 1.5, (("m", 4096), ("n", 250)): 1.2}
    hw = _lstsq_profile(4.0, aligned)
    found = hw.alignment_penalties[("cpu", "lstsq", "float32")]
    assert found["n"][128] == pytest.approx(1.5, rel=1e-3)
    assert found["m"][2048] == pytest.approx(1.2, rel=1e-3)


def test_the_profile_times_tall_shapes_on_each_thread_count_apart_from_the_scale(tiny_plans, monkeypatch):
    from orchestrator.cost.alignment import alignment

    for params in bench_ops.SHAPE_REFERENCE:
        assert alignment(get("qr"), params) == 0
    runs = bench_ops.shape_references("svd", cores=2)
    assert {(dtype, threads) for _, dtype, threads in runs} == {("float32", None), ("float64", None), ("float32", 1),
                                                                ("float64", 1)}
    assert {threads for _, _, threads in bench_ops.shape_references("svd", cores=1)} == {None}
    assert bench_ops.shape_references("solve", cores=2) == []
    monkeypatch.setattr(bench_ops, "CPU_REFERENCE", {"qr": [{"m": 64, "n": 16}, {"m": 128, "n": 32}]})
    monkeypatch.setattr(bench_ops, "SHAPE_REFERENCE", [{"m": m, "n": n} for m in (40, 80) for n in (10, 20)])
    result = profiler.profile_machine(quick=True, nvml=scenario("zero_gpus"), env={})
    timed = result.cpu.op_benchmarks["qr"]
    shaped = [bench for bench in timed if bench.shape]
    assert len(shaped) == len(bench_ops.shape_references("qr", result.cpu.cores_logical))
    assert [bench.params for bench in timed if not bench.shape] == [
        params for params, _, _ in bench_ops.references("qr", "cpu", result.cpu.cores_logical)]


def test_stand_in_gpus_take_the_cpus_references_but_not_those_across_shapes():
    from orchestrator.hardware.standin import stand_in_gpus

    cpu = _lstsq_profile(4.0).node.cpu
    [gpu] = stand_in_gpus(cpu, 1)
    assert any(bench.shape for bench in cpu.op_benchmarks["lstsq"])
    assert gpu.op_benchmarks["lstsq"] and not any(bench.shape for bench in gpu.op_benchmarks["lstsq"])
