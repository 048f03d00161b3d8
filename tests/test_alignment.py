"""A CPU's measured references beyond the op's scale: LAPACK's alignment penalties (per class,
per dimension, per dtype and thread count, fading for square factorisations: cost/alignment.py)
and the one-thread scale a CPU job runs at where its references ran faster so."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator import ops
from orchestrator.cost.alignment import classes
from orchestrator.cost.calibration import Calibration, fit
from orchestrator.cost.candidates import candidates
from orchestrator.cost.model import predict
from orchestrator.cost.refit import samples_from
from orchestrator.plan.hardware import hardware_for
from orchestrator.profile import store
from orchestrator.profile.model import OpBenchmark
from orchestrator.results.rows import JobRow
from orchestrator.workload.model import Job

ROOT = Path(__file__).resolve().parent.parent


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
    calibration = fit("vm", samples, runs=1, fitted="now")
    assert calibration.groups[0].form == "curve"
    whole = {**calibration.model_dump(), "groups": [{**calibration.groups[0].model_dump(), "weight": 1.0}]}
    learnt = dataclasses.replace(hw, calibration=Calibration.model_validate(whole))  # the curve itself (its weight: test_calibration)
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


def test_float64_on_one_thread_reads_its_own_one_thread_references():
    """svd of 1600 x 180 float64 took 9.7 ms on one thread of this VM and 16 ms on both, float32's
    5.8 and 14 (2026-11-29). float64 had no one-thread references and read float32's one-thread
    scale at float64's GEMM rate: 11.4 ms on one thread against 10.2 on both, so both were
    chosen. Timed on one thread too, float64 takes its own scale there, and the thread count
    follows it either way: here float32 is faster on one thread and float64 is not."""
    node = store.resolve(str(ROOT / "docs/data/profile-vm-20261128.yaml")).model_copy(deep=True)
    bare = hardware_for(node, calibrated=False)
    sizes = [{"m": 1000, "n": 250}, {"m": 2000, "n": 500}, {"m": 400, "n": 100}]
    levels = {("float32", None): 2.5, ("float32", 1): 1.0, ("float64", None): 1.2, ("float64", 1): 3.0}
    node.cpu.op_benchmarks["svd"] = [_reference(bare, "svd", p, scale, dtype, threads)
                                     for (dtype, threads), scale in levels.items() for p in sizes]
    hw = hardware_for(node, calibrated=False)
    cpu = candidates(hw)[0]
    job32, job64 = Job("s", "svd", {"m": 1600, "n": 180}), Job("s", "svd", {"m": 1600, "n": 180}, "float64")
    assert predict(job32, cpu, hw).threads == 1
    assert predict(job64, cpu, hw).threads is None
    one, wide = predict(job64, cpu, hw, threads=1), predict(job64, cpu, hw, threads=2)
    assert one.terms["compute_s"] == pytest.approx(3.0 / 1.2 * wide.terms["compute_s"], rel=1e-6)
    node.cpu.op_benchmarks["svd"] = [bench for bench in node.cpu.op_benchmarks["svd"]
                                     if (bench.dtype, bench.threads) != ("float64", 1)]
    before = hardware_for(node, calibrated=False)  # a profile from before: float32's one-thread scale
    assert predict(job64, cpu, before).threads == 1
