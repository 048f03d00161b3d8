"""Calibration: the fit itself (synthetic, with outliers), the model's shape kept, the CLI, and
the held-out must-show on this machine (train on some sizes, predict others and other dtypes)."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import ops
from orchestrator.cost.calibration import ANY_DTYPE, Calibration, Factors, Sample, fit, fit_group
from orchestrator.cost.model import candidates, predict
from tests.cli import orch
from tests.test_cost_model import HARDWARE, PROFILES, jobs

ROOT = Path(__file__).resolve().parent.parent


def _samples(overhead: float, work: float, noise: float = 0.03, outliers: int = 0, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    found = []
    for i in range(12):
        o, w = 2e-4, 1e-5 * 2 ** i  # overhead-bound at small sizes, work-bound at large ones
        measured = (overhead * o + work * w) * math.exp(rng.gauss(0, noise))
        if i < outliers:
            measured *= 4  # a disturbed measurement
        found.append(Sample("matmul", "cpu", "float32", o, w, 0.0, measured, 1e6 * 2 ** i))
    return found


def test_fit_recovers_both_factors_despite_outliers():
    a, b = fit_group(_samples(1.7, 0.6, outliers=2))
    assert a == pytest.approx(1.7, rel=0.08) and b == pytest.approx(0.6, rel=0.05)


def test_one_disturbed_run_is_not_extrapolated():
    """Three training sizes, the smallest disturbed 6x (the first job on a fresh worker, as seen
    on a 2-core VM): a two-factor fit explains all three and predicts sizes in between up to
    4.8x off; cross-validation keeps the model as it is, which predicts them exactly."""
    from orchestrator.cost.calibration import _fit_form, choose_form

    def sample(i: int, disturbed: float = 1.0) -> Sample:
        o, w = 2e-4, 1e-5 * 2 ** i
        return Sample("matmul", "cpu", "float32", o, w, 0.0, (o + w) * disturbed, 1e6 * 2 ** i)

    train, held = [sample(2, 6.0), sample(5, 1.05), sample(8, 0.97)], [sample(i) for i in (3, 4, 6, 7)]

    def worst(factors: tuple[float, float]) -> float:
        return max(abs((factors[0] * s.overhead_s + factors[1] * s.work_s) / s.measured_s - 1) for s in held)

    assert worst(_fit_form(train, "two")) > 2.0
    assert choose_form(train) == "none" and worst(fit_group(train)) < 0.01
    assert choose_form(_samples(1.7, 0.6, outliers=2)) == "two"  # a real, consistent shift is learnt


def test_one_size_gets_one_factor_for_both_terms():
    one = [dataclasses.replace(s, flops=1e9) for s in _samples(2.0, 2.0)[5:6]]
    a, b = fit_group(one)
    assert a == b and a * one[0].overhead_s + b * one[0].work_s == pytest.approx(one[0].measured_s, rel=0.01)


def test_each_dtype_is_learnt_from_its_own_runs_only():
    """float64 (never run) gets no factors from float32's runs; bfloat16 from its own two."""
    f32 = _samples(1.0, 2.0)
    bf16 = [dataclasses.replace(s, dtype="bfloat16", measured_s=s.measured_s * 3) for s in f32[:2]]
    cal = fit("p", f32 + bf16, runs=1, fitted="now")
    assert cal.factors("matmul", "cpu", "float32").dtype == "float32"
    assert cal.factors("matmul", "cpu", "bfloat16").dtype == "bfloat16"
    assert cal.factors("matmul", "cpu", "float64") is None
    assert cal.factors("dot", "cpu", "float32") is None
    assert {g.dtype for g in cal.groups} == {"float32", "bfloat16"}


@settings(max_examples=300, deadline=None)
@given(jobs(), st.sampled_from(PROFILES), st.data())
def test_calibrated_more_work_never_predicts_less_time(job, profile, data):
    """Any positive factors keep the model's shape."""
    factor = st.floats(math.exp(-7), math.exp(7))
    groups = [Factors(op=job.op, device=device, dtype=ANY_DTYPE, samples=3, sizes=3, overhead=data.draw(factor),
                      work=data.draw(factor), median_error_before=0, median_error_after=0) for device in ("cpu", "gpu")]
    hw = dataclasses.replace(HARDWARE[profile], calibration=Calibration(profile=profile, fitted="now", runs=1,
                                                                        groups=groups))
    op = ops.get(job.op)
    grow = data.draw(st.sampled_from([p for p, s in op.params.items() if s.kind == "size" and p != "batch_size"]))
    bigger_params = {**job.params, grow: job.params[grow] * data.draw(st.integers(2, 16))}
    if op.name == "lstsq" and bigger_params["m"] < bigger_params["n"]:
        return
    bigger = dataclasses.replace(job, params=bigger_params)
    for placement in candidates(hw):
        small, large = predict(job, placement, hw), predict(bigger, placement, hw)
        if small.feasible and large.feasible:
            assert large.predicted_s >= small.predicted_s * (1 - 1e-9)


def test_calibrate_without_runs_is_exit_2():
    result = orch("calibrate", "--profile", "cpu-c7i-8xlarge")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no recorded ok jobs" in result.stderr and "Traceback" not in result.stderr


def test_runs_feed_the_calibration_and_plan_uses_it(tmp_path, orch_home):
    """A run refits the profile's factors (unless --no-learn); `orch plan` then predicts with
    them, and `orch calibrate` prints the error before and after."""
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: w\njobs:\n  - {name: d, op: dot, n: 8M, repeats: 5, sweep: {n: [8M, 32M]}}\n")
    before = json.loads(orch("plan", str(workload), "--profile", "cpu-c7i-8xlarge", "-f", "json").stdout)
    skipped = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--no-learn", "-f", "json")
    assert skipped.returncode == 0 and not (orch_home / "calibration" / "cpu-c7i-8xlarge.yaml").exists()
    measured: dict[str, list[float]] = {}
    for _ in range(2):
        ran = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "-f", "json")
        assert ran.returncode == 0
        for job in json.loads(ran.stdout)["jobs"]:
            measured.setdefault(job["name"], []).append(job["measured_s"])
    assert "calibration of cpu-c7i-8xlarge refitted on 4 recorded jobs" in ran.stderr  # not the --no-learn run's
    assert (orch_home / "calibration" / "cpu-c7i-8xlarge.yaml").stat().st_mode & 0o777 == 0o600
    after = json.loads(orch("plan", str(workload), "--profile", "cpu-c7i-8xlarge", "-f", "json").stdout)
    for old, new in zip(before["jobs"], after["jobs"], strict=True):
        typical = math.exp(sum(math.log(t) for t in measured[new["name"]]) / 2)  # geometric mean of the two runs
        assert abs(math.log(new["predicted_s"] / typical)) < abs(math.log(old["predicted_s"] / typical))
    shown = json.loads(orch("calibrate", "--profile", "cpu-c7i-8xlarge", "-f", "json").stdout)
    assert shown["before"]["jobs"] == 4 and shown["after"]["median"] < shown["before"]["median"]
    assert {(g["op"], g["dtype"]) for g in shown["groups"]} == {("dot", "float32")}  # no pooled "*" group
    assert {job["basis"] for job in after["jobs"]} == {"history"}


def test_learning_keeps_the_newest_measurements_of_each_distinct_job():
    """A sweep run again and again: calibration learns from the newest LEARN_PER_JOB measurements
    of each distinct job (op, sizes, dtype, data, placement), so the refit after a run costs what
    the history's variety costs, not its length (10,000 tiny jobs run twice: 24 s -> 1.3 s)."""
    from orchestrator.results.store import ResultStore

    store = ResultStore()
    try:
        for run in range(5):
            run_id = f"2026-r{run}"
            jobs = [{"name": f"d{n}-{seed}", "op": "dot", "params": {"n": n}, "dtype": "float32", "data": "host",
                     "placement": "cpu", "predicted_s": 1e-5} for n in (1000, 2000) for seed in range(3)]
            store.start_run(run_id, workload="w", path="w.yaml", sha256="0", profile="p", backend="dask",
                            address=None, jobs=jobs, versions={}, learn=run != 4)
            store.record_jobs(run_id, [(job["name"], {"status": "ok", "measured_s": 1e-5 * (run + 1)}) for job in jobs])
        rows, runs = store.jobs_for_profile("p", per_job=4)
    finally:
        store.close()
    assert runs == 4  # the --no-learn run is left out
    by_size: dict[int, list[dict]] = {}
    for row in rows:
        by_size.setdefault(row["params"]["n"], []).append(row)
    assert sorted(by_size) == [1000, 2000] and all(len(found) == 4 for found in by_size.values())
    for found in by_size.values():  # the newest four of twelve (runs 2 and 3), oldest first
        assert [row["measured_s"] for row in found] == pytest.approx([3e-5] * 1 + [4e-5] * 3)
