"""The cost model's shape on the profiles measured on real machines (docs/data/) as well as the
datasheet ones: more work never predicts less time, calibration factors reach the plan, and
each term is the one the harness pays."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml

from orchestrator import ops
from orchestrator.cost.alignment import classes
from orchestrator.cost.calibration import ANY_DTYPE, Calibration, Factors, fit
from orchestrator.cost.refit import samples_from
from orchestrator.cost.candidates import candidates
from orchestrator.cost import rates
from orchestrator.cost.model import combine, predict
from orchestrator.plan.hardware import hardware_for
from orchestrator.profile import store
from orchestrator.profile.model import OpBenchmark
from orchestrator.results.rows import JobRow
from orchestrator.workload.model import Job
from tests.cli import orch

ROOT = Path(__file__).resolve().parent.parent
MEASURED = sorted(str(p) for p in (ROOT / "docs" / "data").glob("profile-*.yaml"))
BUNDLED = ["h100-sxm", "h100-sxm-8", "a100-80gb", "l4", "t4", "cpu-c7i-8xlarge", "cpu-c7i-48xlarge",
           "cpu-c7i-8xlarge-x4", "h100-sxm-8-x4"]
BASE = {"dot": {"n": 64}, "python_dot": {"n": 64}, "axpy": {"n": 64}, "sum": {"n": 64}, "fft": {"n": 64},
        "matmul": {"m": 8, "n": 8, "k": 8}, "batched_matmul": {"batch": 2, "m": 8, "n": 8, "k": 8},
        "solve": {"n": 16, "nrhs": 1}, "cholesky": {"n": 16}, "eigh": {"n": 16}, "qr": {"m": 64, "n": 16},
        "svd": {"m": 64, "n": 16}, "lstsq": {"m": 4096, "n": 4},
        "kmeans": {"samples": 256, "features": 4, "clusters": 2, "iterations": 2},
        "train_linear": {"samples": 256, "features": 4, "epochs": 1, "batch_size": 64},
        "train_mlp": {"samples": 256, "features": 4, "hidden": [8], "classes": 2, "epochs": 1, "batch_size": 64}}
STEPS, GROWTH = 36, 1.3  # each sweep covers a factor of 1.3^35, about 10,000


def _sweeps(op: ops.Op):
    """(parameter, list of params) along a geometric sweep of each size parameter but batch_size
    (the same samples in larger batches is not more work)."""
    for name, spec in op.params.items():
        if spec.kind != "size" or name == "batch_size":
            continue
        series = []
        for i in range(STEPS):
            params = {**BASE[op.name], name: max(1, round(BASE[op.name][name] * GROWTH ** i))}
            if op.name == "lstsq" and params["m"] < params["n"]:
                break
            series.append(params)
        yield name, series


@pytest.mark.parametrize("profile", MEASURED + BUNDLED)
def test_more_work_never_predicts_less_time_along_any_sweep(profile):
    """Every (op, parameter, dtype, placement, data) series, on every profile; the measured ones
    carry op benchmarks whose scales once made eigh on an H200 predict less time at n=668 than
    at n=570."""
    hw = hardware_for(store.resolve(profile), calibrated=False)
    broken = []
    for name in ops.names():
        op = ops.get(name)
        for param, series in _sweeps(op):
            for dtype in op.dtypes:
                for data in ("host", "device"):
                    for placement in candidates(hw):
                        times = [predict(Job("j", name, p, dtype, data=data), placement, hw) for p in series]
                        times = [(p, t.predicted_s) for p, t in zip(series, times) if t.feasible]
                        for (p0, t0), (p1, t1) in zip(times, times[1:]):
                            if any(size < classes(op, p0)[dim] for dim, size in classes(op, p1).items()):
                                continue  # LAPACK at 1040 runs faster than at 1024 (cost/alignment.py)
                            if t1 < t0 * (1 - 1e-9):
                                broken.append(f"{name} {dtype} {placement} data={data} {param}: "
                                              f"{p0[param]} -> {t0:.4g} s, {p1[param]} -> {t1:.4g} s")
    assert not broken, "\n".join(broken[:20])


@pytest.mark.parametrize("profile", MEASURED + BUNDLED)
def test_no_product_of_matrices_is_predicted_faster_than_the_devices_largest_gemm(profile):
    """A batch of small products keeps every core busy where one does not, so batched_matmul's
    references beat the GEMM curve at the per-matrix size; the scale they give must not carry a
    batch past the largest GEMM's rate (8 x 200^3 was predicted at 680 GFLOP/s on a VM whose
    largest GEMM ran 416), unless the op's own references ran faster."""
    hw = hardware_for(store.resolve(profile), calibrated=False)
    too_fast = []
    for name in ("matmul", "batched_matmul"):
        op = ops.get(name)
        for _, series in _sweeps(op):
            for dtype in op.dtypes:
                for placement in (p for p in candidates(hw) if p.devices == 1 and p.nodes == 1):
                    device = hw.gpus[0] if placement.device == "gpu" else hw.node.cpu
                    ceiling = max(rates.gemm_ceiling(device, dtype),
                                  hw.fastest_references.get((placement.device, name, dtype), 0.0))
                    for p in series:
                        got = predict(Job("j", name, p, dtype, data="device"), placement, hw)
                        if got.feasible and op.flops(p) / got.terms["compute_s"] > ceiling * (1 + 1e-9):
                            too_fast.append(f"{name} {dtype} {placement} {p}: "
                                            f"{op.flops(p) / got.terms['compute_s'] / 1e9:.0f} GFLOP/s")
    assert not too_fast, "\n".join(too_fast[:20])


def test_eigh_on_the_h200_no_longer_predicts_less_time_for_more_work():
    hw = hardware_for(store.resolve(str(ROOT / "docs/data/profile-h200-vm.yaml")), calibrated=False)
    gpu = next(p for p in candidates(hw) if str(p) == "gpu")
    small, large = (predict(Job("e", "eigh", {"n": n}, data="device"), gpu, hw).predicted_s for n in (570, 668))
    assert large >= small


def _one_factor(op: str, factor: float) -> Calibration:
    groups = [Factors(op=op, device=device, dtype=ANY_DTYPE, samples=3, sizes=3, form="one", overhead=factor,
                      work=factor, median_error_before=0, median_error_after=0) for device in ("cpu", "gpu")]
    return Calibration(profile="p", fitted="now", runs=1, groups=groups)


@pytest.mark.parametrize("profile", [*MEASURED, "h100-sxm"])
@pytest.mark.parametrize("op", ops.names())
@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_a_calibration_factor_scales_the_prediction_by_that_factor(profile, op, factor):
    """No transfer or communication: the whole prediction scales. The op benchmarks' scale must
    not absorb the factor (it once did for every op with benchmarks)."""
    hw = hardware_for(store.resolve(profile), calibrated=False)
    scaled = dataclasses.replace(hw, calibration=_one_factor(op, factor))
    params = {**BASE[op], **({"n": 4096} if "n" in BASE[op] and op != "lstsq" else {})}
    for placement, data in (("cpu", "host"), ("gpu", "device")):
        match = [p for p in candidates(hw) if str(p) == placement]
        job = Job("j", op, params, ops.get(op).dtypes[-1] if op == "python_dot" else "float32", data=data)
        if not match or not predict(job, match[0], hw).feasible:
            continue
        plain, learnt = predict(job, match[0], hw), predict(job, match[0], scaled)
        assert learnt.predicted_s == pytest.approx(factor * plain.predicted_s, rel=1e-9), (placement, plain.terms)


def test_plan_uses_the_learnt_factor_for_an_op_with_benchmarks(tmp_path, orch_home):
    """Through the command line: cholesky and kmeans have op benchmarks on the measured H200
    profile; a factor of 2 in `$ORCH_HOME/calibration/h200-vm.yaml` doubles their CPU plan."""
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: w\njobs:\n  - {name: c, op: cholesky, n: 1500, placement: cpu}\n"
                        "  - {name: k, op: kmeans, samples: 100K, features: 16, clusters: 8, placement: cpu}\n")
    profile = str(ROOT / "docs/data/profile-h200-vm.yaml")
    before = json.loads(orch("plan", str(workload), "--profile", profile, "-f", "json").stdout)
    folder = orch_home / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    groups = [g.model_dump() for op in ("cholesky", "kmeans") for g in _one_factor(op, 2.0).groups]
    (folder / "h200-vm.yaml").write_text(yaml.safe_dump({"profile": "h200-vm", "fitted": "now", "runs": 1,
                                                         "groups": groups}))
    after = json.loads(orch("plan", str(workload), "--profile", profile, "-f", "json").stdout)
    for old, new in zip(before["jobs"], after["jobs"], strict=True):
        assert new["predicted_s"] == pytest.approx(2 * old["predicted_s"], rel=1e-4)


def test_calibration_learnt_at_some_sizes_predicts_other_sizes():
    """Held out: runs of cholesky, kmeans and qr (ops with op benchmarks) at three sizes, 1.8x
    slower than the model says; the factors learnt from them predict three other sizes within 5%.
    When the op benchmarks' scale absorbs the factor, the held-out error stays at 44%."""
    profile = store.resolve(str(ROOT / "docs/data/profile-h200-vm.yaml"))
    hw = hardware_for(profile, calibrated=False)
    sizes = {"cholesky": ([{"n": 800}, {"n": 1600}, {"n": 3200}], [{"n": 1100}, {"n": 2300}, {"n": 4500}]),
             "qr": ([{"m": 2000, "n": 400}, {"m": 4000, "n": 800}, {"m": 8000, "n": 1600}],
                    [{"m": 3000, "n": 600}, {"m": 6000, "n": 1200}, {"m": 12000, "n": 2000}]),
             "kmeans": ([{"samples": s, "features": 32, "clusters": 16, "iterations": 5} for s in (20_000, 80_000, 320_000)],
                        [{"samples": s, "features": 32, "clusters": 16, "iterations": 5} for s in (40_000, 160_000, 640_000)])}
    truth = 1.8

    def row(op: str, params: dict) -> JobRow:
        job = Job("j", op, params)
        measured = truth * predict(job, candidates(hw)[0], hw).predicted_s
        return JobRow("r", "j", op, params, "ok", placement="cpu", dtype="float32", data="host", measured_s=measured)

    rows = [row(op, p) for op, (train, _) in sizes.items() for p in train]
    learnt = dataclasses.replace(hw, calibration=fit("h200-vm", samples_from(rows, hw), runs=1, fitted="now"))
    for op, (_, held) in sizes.items():
        for params in held:
            job = Job("j", op, params)
            want = truth * predict(job, candidates(hw)[0], hw).predicted_s
            got = predict(job, candidates(hw)[0], learnt).predicted_s
            assert got == pytest.approx(want, rel=0.05), (op, params)


def test_a_cpu_job_on_device_data_pays_only_the_copy_of_its_inputs():
    """The harness copies a CPU job's device-resident inputs to the host; its result is made in
    host memory and stays there."""
    hw = hardware_for(store.resolve("h100-sxm"), calibrated=False)
    job = Job("m", "matmul", {"m": 1000, "n": 2000, "k": 3000}, data="device")
    cpu = candidates(hw)[0]
    inputs = (1000 * 3000 + 3000 * 2000) * 4
    from orchestrator.cost.rates import d2h_bandwidth

    assert predict(job, cpu, hw).terms["transfer_s"] == pytest.approx(inputs / d2h_bandwidth(hw.gpus[0], nbytes=inputs))


def test_gpu_launches_overlap_the_work():
    """An eager GPU training job: its launches are issued while earlier kernels run, so the
    prediction is the first launch plus the larger of launches and work, never their sum."""
    hw = hardware_for(store.resolve(str(ROOT / "docs/data/profile-h100-vm.yaml")), calibrated=False)
    job = Job("t", "train_mlp", {"samples": 200_000, "features": 512, "hidden": [2048, 2048], "classes": 100,
                                 "epochs": 1, "batch_size": 1024}, data="device")
    gpu = next(p for p in candidates(hw) if str(p) == "gpu")
    t = predict(job, gpu, hw).terms
    assert t["dispatch_s"] > 0 and t["overhead_s"] < 1e-3
    assert combine(t) == pytest.approx(t["overhead_s"] + max(t["dispatch_s"], t["compute_s"], t["memory_s"]))


def test_an_op_benchmark_far_off_the_model_is_followed_not_clamped():
    """A reference job measured 50x the model's time: predicted at that size as measured (the
    old scale clamp stopped at 20x and hid the error)."""
    profile = store.resolve("cpu-c7i-8xlarge")
    plain = hardware_for(profile, calibrated=False)
    params = {"n": 1024}
    raw = predict(Job("c", "cholesky", params), candidates(plain)[0], plain, scaled=False)
    work = max(raw.terms["compute_s"], raw.terms["memory_s"])
    measured = raw.predicted_s - work + 50 * work
    slow = profile.model_copy(deep=True)
    slow.cpu.op_benchmarks = {"cholesky": [OpBenchmark(params=params, dtype="float32", data="host", measured_s=measured)]}
    hw = hardware_for(slow, calibrated=False)
    assert predict(Job("c", "cholesky", params), candidates(hw)[0], hw).predicted_s == pytest.approx(measured, rel=1e-9)
    assert math.isfinite(measured)


def _reference(bare, op: str, params: dict, scale: float, dtype: str = "float32",
               threads: int | None = None) -> OpBenchmark:
    """A reference of `op` at `params` on `bare` (a profile's hardware without op scales): what
    the model without a scale predicts there, its work taken `scale` times as long."""
    raw = predict(Job("r", op, params, dtype), candidates(bare)[0], bare, scaled=False, calibrated=False)
    work = max(raw.terms[t] for t in ("compute_s", "memory_s", "dispatch_s"))
    return OpBenchmark(params=params, dtype=dtype, data="host", threads=threads,
                       measured_s=raw.predicted_s + (scale - 1) * work)


def _with_cholesky_references(scales: dict[int, float], float64: dict[int, float] | None = None) -> tuple:
    """This VM's measured profile with cholesky's CPU references replaced: n -> its work taken
    `scales[n]` times as long as the model without a scale says (and float64's, `float64[n]`)."""
    node = store.resolve(str(ROOT / "docs/data/profile-vm-20261128.yaml")).model_copy(deep=True)
    bare = hardware_for(node, calibrated=False)
    node.cpu.op_benchmarks["cholesky"] = [_reference(bare, "cholesky", {"n": n}, scale, dtype)
                                          for dtype, table in (("float32", scales), ("float64", float64 or {}))
                                          for n, scale in table.items()]
    return node, hardware_for(node, calibrated=False)


def _work_s(job: Job, hw) -> float:
    terms = predict(job, candidates(hw)[0], hw, calibrated=False).terms
    return max(terms[t] for t in ("compute_s", "memory_s", "dispatch_s"))


def test_lapack_at_aligned_sizes_is_as_slow_as_its_references_measured():
    """References at 1000 and 2000 make the scale; those at multiples of 1024 and 2048 (3x
    slower per FLOP) and of 128 (1.5x) the penalties of their classes, which every size of that
    class pays, and the classes between are read between them (256: 1.5^(2/3) 3^(1/3)); a
    profile measured only at aligned sizes (before the penalties were measured) reads its scale
    off all of them, as before."""
    _, plain = _with_cholesky_references({1000: 2.0, 2000: 2.0})
    _, aligned = _with_cholesky_references({1000: 2.0, 2000: 2.0, 1024: 6.0, 2048: 6.0, 896: 3.0})
    between = (1.5 ** (2 / 3) * 3 ** (1 / 3), 1.5 ** (1 / 3) * 3 ** (2 / 3))
    assert aligned.alignment_penalties[("cpu", "cholesky", "float32")]["n"] == pytest.approx(
        {128: 1.5, 256: between[0], 512: between[1], 1024: 3.0, 2048: 3.0})
    # beyond the size a class was measured at (a class read between two: the larger of theirs),
    # a square factorisation's penalty fades as 1/n (`faded`, below)
    for n, penalty in ((1000, 1.0), (1024, 3.0), (1536, 1 + (between[1] - 1) * 1024 / 1536), (4096, 2.0),
                       (768, between[0]), (896, 1.5), (1152, 1 + 0.5 * 896 / 1152), (1100, 1.0)):
        job = Job("c", "cholesky", {"n": n})
        assert _work_s(job, aligned) == pytest.approx(penalty * _work_s(job, plain), rel=1e-9), n
    float64 = Job("c", "cholesky", {"n": 1024}, "float64")
    assert _work_s(float64, aligned) == pytest.approx(3.0 * _work_s(float64, plain), rel=1e-9)
    _, legacy = _with_cholesky_references({1024: 6.0, 2048: 6.0})
    assert ("cpu", "cholesky", "float32") not in legacy.alignment_penalties
    assert _work_s(Job("c", "cholesky", {"n": 1000}), legacy) == pytest.approx(
        3.0 * _work_s(Job("c", "cholesky", {"n": 1000}), plain), rel=0.02)


def test_a_square_factorisations_penalty_fades_beyond_the_size_it_was_measured_at():
    """On this VM's MKL a Cholesky of 1024 ran 3.65x its neighbours' time per FLOP and one of
    3072, the same class, 2.1x; 4096 1.95x where 2048 ran 2.74x. The part that pays the penalty
    (the panels, n^2 x the block width) shrinks against the whole (n^3): the penalty's excess
    fades as 1/n beyond the reference. A tall factorisation keeps its penalties (qr's panel
    width cost 1.04x at 1000 x 256 and 1.14x at 4000 x 256)."""
    _, plain = _with_cholesky_references({1000: 2.0, 2000: 2.0})
    _, aligned = _with_cholesky_references({1000: 2.0, 2000: 2.0, 1024: 6.0, 896: 3.0})
    ratios = {n: _work_s(Job("c", "cholesky", {"n": n}), aligned) / _work_s(Job("c", "cholesky", {"n": n}), plain)
              for n in (1024, 2048, 3072, 4096)}
    assert ratios == pytest.approx({1024: 3.0, 2048: 2.0, 3072: 1 + 2 / 3, 4096: 1.5}, rel=1e-9)
    assert all(a >= b for a, b in zip(ratios.values(), list(ratios.values())[1:]))
    node = store.resolve(str(ROOT / "docs/data/profile-vm-20261128.yaml")).model_copy(deep=True)
    bare = hardware_for(node, calibrated=False)
    node.cpu.op_benchmarks["lstsq"] = [_reference(bare, "lstsq", {"m": m, "n": n}, scale)
                                       for m, n, scale in ((4000, 250, 2.0), (8000, 500, 2.0), (4000, 256, 3.0))]
    tall = hardware_for(node, calibrated=False)
    assert tall.alignment_penalty("cpu", "lstsq", {"m": 16000, "n": 1024}) == pytest.approx(1.5)


def test_float64_pays_its_own_penalty_where_its_aligned_references_ran():
    """float64 references at aligned sizes measure float64's penalty (MKL's float64 Cholesky of
    1536 paid less than float32's here): a float64 job pays that one, a float32 job float32's."""
    plain64 = {1000: 2.0, 2000: 2.0, 400: 2.0}
    _, hw = _with_cholesky_references({1000: 2.0, 2000: 2.0, 1024: 6.0, 896: 3.0},
                                      {**plain64, 1024: 3.0, 896: 2.2})
    assert hw.alignment_penalties[("cpu", "cholesky", "float64")]["n"][1024] == pytest.approx(1.5)
    assert hw.alignment_penalties[("cpu", "cholesky", "float32")]["n"][1024] == pytest.approx(3.0)
    _, bare = _with_cholesky_references({1000: 2.0, 2000: 2.0}, plain64)
    for dtype, penalty in (("float64", 1.5), ("float32", 3.0)):
        job = Job("c", "cholesky", {"n": 1024}, dtype)
        assert _work_s(job, hw) == pytest.approx(penalty * _work_s(job, bare), rel=1e-6), dtype


def test_a_penalty_is_never_below_one_nor_below_a_less_aligned_class():
    _, hw = _with_cholesky_references({1000: 2.0, 2000: 2.0, 1024: 1.8, 2048: 2.2, 896: 2.6})
    assert hw.alignment_penalties[("cpu", "cholesky", "float32")]["n"] == pytest.approx(
        dict.fromkeys((128, 256, 512, 1024, 2048), 1.3))
    _, hw = _with_cholesky_references({1000: 2.0, 2000: 2.0, 1024: 1.9, 2048: 1.9, 896: 1.9})
    assert hw.alignment_penalties[("cpu", "cholesky", "float32")]["n"] == dict.fromkeys((128, 256, 512, 1024, 2048), 1.0)


def test_runs_at_aligned_and_other_sizes_make_one_curve():
    """Runs at 512, 1000, 1024 and 2048 that bend away from the model as a power of their FLOPs
    (its penalty included; a curve, not a factor): the curve through them, each penalty divided
    out, predicts 768 (a multiple of 128), 1536 (of 512) and 1500 (of neither) on that bend."""
    _, hw = _with_cholesky_references({1000: 2.0, 2000: 2.0, 1024: 6.0, 2048: 6.0, 896: 3.0})
    cpu = candidates(hw)[0]

    def bent(n: int) -> float:
        return predict(Job("c", "cholesky", {"n": n}), cpu, hw).predicted_s * (n / 512) ** 0.9

    rows = [JobRow("r", f"c{n}", "cholesky", {"n": n}, "ok", placement="cpu", dtype="float32", data="host",
                   measured_s=bent(n)) for n in (512, 1000, 1024, 2048)]
    samples = samples_from(rows, hw)
    assert [s.penalty for s in samples] == pytest.approx([1.5 ** (1 / 3) * 3 ** (2 / 3), 1.0, 3.0, 3.0])
    learnt = dataclasses.replace(hw, calibration=fit("vm", samples, runs=1, fitted="now"))
    assert learnt.calibration.groups[0].form == "curve"
    for n in (768, 1536, 1500):
        got = predict(Job("c", "cholesky", {"n": n}), cpu, learnt)
        assert got.basis == "fit"
        assert got.predicted_s == pytest.approx(bent(n), rel=0.05), n


def _with_one_thread_references(op: str, params: list[dict], all_cores: float, one: float):
    """This VM's measured profile with `op`'s CPU references replaced: at `params`, the work
    taken `all_cores` times what the bare model says on all the cores, `one` times on one."""
    node = store.resolve(str(ROOT / "docs/data/profile-vm-20261128.yaml")).model_copy(deep=True)
    bare = hardware_for(node, calibrated=False)
    node.cpu.op_benchmarks[op] = [_reference(bare, op, p, scale, threads=threads)
                                  for p in params for threads, scale in ((None, all_cores), (1, one))]
    return hardware_for(node, calibrated=False)


def test_a_cpu_job_runs_on_one_thread_where_its_references_ran_faster_so():
    """qr measured 2.5x faster on one thread than on all the cores (as on this VM: 11 ms against
    28 ms at 2048 x 256): one thread is chosen, at its own scale; matmul, slower on one thread,
    stays on all the cores. A recorded run's thread count is predicted as it ran."""
    sizes = [{"m": 2000, "n": 500}, {"m": 4000, "n": 1000}]
    hw = _with_one_thread_references("qr", sizes, all_cores=2.5, one=1.0)
    cpu = candidates(hw)[0]
    job = Job("q", "qr", {"m": 3000, "n": 300})
    chosen, wide = predict(job, cpu, hw), predict(job, cpu, hw, threads=2)
    assert chosen.threads == 1 and wide.threads is None
    work = ("compute_s", "memory_s")
    assert max(wide.terms[t] for t in work) == pytest.approx(2.5 * max(chosen.terms[t] for t in work), rel=1e-6)
    assert predict(job, cpu, hw, threads=1).predicted_s == chosen.predicted_s
    float64 = predict(Job("q", "qr", {"m": 3000, "n": 300}, "float64"), cpu, hw)
    assert float64.threads == 1
    slow = _with_one_thread_references("matmul", [{"m": 256, "n": 256, "k": 256}, {"m": 1024, "n": 1024, "k": 1024}],
                                       all_cores=1.0, one=1.9)
    assert predict(Job("m", "matmul", {"m": 512, "n": 512, "k": 512}), cpu, slow).threads is None


def test_one_thread_pays_the_penalty_its_own_aligned_references_measured():
    """MKL's qr of 1024 x 512 ran at its scale on both threads of this VM and 1.23x slower per
    FLOP on one (a profile's penalties, 2026-11-28): aligned references timed on one thread
    measure that thread count's penalties, and a job on one thread pays them; float64, whose
    aligned references are timed on all the cores only, pays float64's there (lstsq of 2048 x 192
    float64 ran 1.09x slow on one thread, float64's all-core references read 1.05-1.09x, float32's
    one-thread ones 1.24-1.33x; charged those, it went to both threads and took 15 ms, not 5.7)."""
    node = store.resolve(str(ROOT / "docs/data/profile-vm-20261128.yaml")).model_copy(deep=True)
    bare = hardware_for(node, calibrated=False)

    def bench(n: int, scale: float, threads: int | None) -> OpBenchmark:
        return _reference(bare, "cholesky", {"n": n}, scale, threads=threads)

    plain = [bench(1000, 2.0, None), bench(2000, 2.0, None), bench(1024, 2.0, None), bench(1000, 2.0, 1),
             bench(2000, 2.0, 1)]
    node.cpu.op_benchmarks["cholesky"] = plain
    without = hardware_for(node.model_copy(deep=True), calibrated=False)
    node.cpu.op_benchmarks["cholesky"] = [*plain, bench(1024, 6.0, 1)]
    hw = hardware_for(node, calibrated=False)
    assert hw.alignment_penalties[("cpu:1", "cholesky", "float32")]["n"][1024] == pytest.approx(3.0)
    assert hw.alignment_penalties[("cpu", "cholesky", "float32")]["n"][1024] == pytest.approx(1.0)
    cpu = candidates(hw)[0]
    job = Job("c", "cholesky", {"n": 1024})
    one, earlier = predict(job, cpu, hw, threads=1), predict(job, cpu, without, threads=1)
    assert (one.penalty, earlier.penalty) == pytest.approx((3.0, 1.0))
    assert one.terms["compute_s"] == pytest.approx(3.0 * earlier.terms["compute_s"], rel=1e-9)
    assert predict(job, cpu, hw).threads is None  # 3x slower on one thread: both are faster
    assert predict(Job("c", "cholesky", {"n": 1024}, "float64"), cpu, hw, threads=1).penalty == pytest.approx(1.0)


def test_a_tall_factorisation_pays_each_dimensions_penalty():
    """The leading dimension costs as the panel width does, each on its own (on one thread of
    this VM lstsq of 4000 x 256 took 1.77x the time of 4000 x 250, 4096 x 250 1.36x, 4096 x 256
    2.1x): references aligned in m alone measure m's penalties, in n alone n's, one aligned in
    both neither; a job pays the product of its dimensions'."""
    node = store.resolve(str(ROOT / "docs/data/profile-vm-20261128.yaml")).model_copy(deep=True)
    bare = hardware_for(node, calibrated=False)

    def bench(m: int, n: int, scale: float) -> OpBenchmark:
        return _reference(bare, "lstsq", {"m": m, "n": n}, scale)

    node.cpu.op_benchmarks["lstsq"] = [bench(4000, 250, 2.0), bench(8000, 500, 2.0), bench(4000, 256, 3.0),
                                       bench(4096, 250, 2.5), bench(4096, 512, 9.0)]
    hw = hardware_for(node, calibrated=False)
    assert classes(ops.get("lstsq"), {"m": 4096, "n": 192}) == {"m": 2048, "n": 0}
    found = hw.alignment_penalties[("cpu", "lstsq", "float32")]
    assert (found["n"][256], found["m"][2048]) == pytest.approx((1.5, 1.25))
    for params, penalty in (({"m": 2048, "n": 192}, 1.25), ({"m": 2000, "n": 256}, 1.5), ({"m": 4096, "n": 256}, 1.875),
                            ({"m": 2000, "n": 190}, 1.0)):
        assert hw.alignment_penalty("cpu", "lstsq", params) == pytest.approx(penalty), params
