"""The contract's `basis`: which tier of orch answered a plan. `model` on a fresh ORCH_HOME;
after one run, `history` for each job at the very size it ran, `fit` for its op at other sizes
of the same dtype, and `model` again for a dtype never run and for sizes far outside the run's."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import yaml

from orchestrator.cost.calibration import Factors, apply, shrunk
from orchestrator.cost.model import combine
from tests.cli import orch

PROFILE = "cpu-c7i-8xlarge"


def _plan(path) -> dict[str, dict]:
    result = orch("plan", str(path), "--profile", PROFILE, "--format", "json")
    assert result.returncode == 0, result.stderr
    return {job["name"]: job for job in json.loads(result.stdout)["jobs"]}


def _workload(folder, name: str, jobs: str):
    path = folder / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\njobs:\n{jobs}")
    return path


def test_plan_says_model_then_history_at_the_size_run_and_fit_at_others(tmp_path, orch_home):
    ran_path = _workload(tmp_path, "w", "  - {name: d, op: dot, n: 200K, repeats: 5}\n"
                                        "  - {name: c, op: cholesky, n: 384, repeats: 5}\n")
    other = _workload(tmp_path, "o", "  - {name: d, op: dot, n: 300K}\n  - {name: c, op: cholesky, n: 512}\n"
                                     "  - {name: d64, op: dot, n: 200K, dtype: float64}\n"
                                     "  - {name: far, op: dot, n: 1G}\n")
    before = _plan(ran_path)
    assert {job["basis"] for job in before.values()} == {"model"}  # a fresh ORCH_HOME
    uncalibrated = _plan(other)
    ran = orch("run", str(ran_path), "--profile", PROFILE, "--format", "json")
    assert ran.returncode == 0, ran.stderr
    times = {job["name"]: job["times_s"] for job in json.loads(ran.stdout)["jobs"]}
    after = _plan(ran_path)
    for name in ("d", "c"):
        assert after[name]["basis"] == "history"
        # the median of its executions (none of 5 is 3 MADs out in a quiet run; if one is, the
        # median of the rest stays within the range measured; a job disturbed while it ran, its
        # fastest ones), taken at nominal speed: divided by how slow the sentinel read the
        # machine beside it against the run's median probe (jobs run in several worker
        # processes, each probing on its own: a few % apart)
        assert min(times[name]) / 1.1 <= after[name]["predicted_s"] <= max(times[name]) * 1.1

    elsewhere = _plan(other)
    assert elsewhere["d"]["basis"] == "fit" and elsewhere["c"]["basis"] == "fit"
    assert elsewhere["d64"]["basis"] == "model"  # float64 never borrows float32's factors
    assert elsewhere["far"]["basis"] == "model"  # 3.7 decades past the work it was fitted on
    assert elsewhere["far"]["predicted_s"] == pytest.approx(uncalibrated["far"]["predicted_s"], rel=1e-6)
    learnt = yaml.safe_load((orch_home / "calibration" / f"{PROFILE}.yaml").read_text())
    for name, op in (("d", "dot"), ("c", "cholesky")):
        group = next(g for g in learnt["groups"] if g["op"] == op and g["device"] == "cpu" and g["dtype"] == "float32")
        old, new = uncalibrated[name]["candidates"][0]["terms"], elsewhere[name]["candidates"][0]["terms"]
        factors = Factors(**group)
        work, reaches = factors.work_at(max(old["compute_s"], old["memory_s"]))
        # learnt from one run, the plan takes at least half the correction (in log space)
        assert reaches and group["runs"] == 1 and 0.5 <= group["weight"] <= 1
        corrected = combine(apply(old, factors, work))
        assert combine(new) == pytest.approx(shrunk(corrected, combine(old), group["weight"]), rel=1e-3)


def test_fit_fades_to_the_model_outside_its_sizes_and_never_falls_with_more_work():
    group = Factors(op="dot", device="cpu", dtype="float32", samples=3, sizes=3, overhead=1.0, work=3.0,
                    median_error_before=0, median_error_after=0, work_min_s=1e-4, work_max_s=1e-3)
    assert group.work_at(5e-4) == (3.0, True) and group.work_at(1e-2) == (3.0, True)  # within a decade: held
    fading = group.work_at(1e-1)
    assert fading[0] == pytest.approx(3.0 ** 0.5) and fading[1]
    assert group.work_at(1.0) == (1.0, False) and group.work_at(1e-7) == (1.0, False)
    works = [10 ** (e / 4) for e in range(-32, 4)]
    times = [w * group.work_at(w)[0] for w in works]
    assert all(later >= earlier for earlier, later in zip(times, times[1:]))
    huge = group.model_copy(update={"work": math.exp(7)})  # a factor too large to fade in 2 decades monotonely
    times = [w * huge.work_at(w)[0] for w in works]
    assert all(later >= earlier * (1 - 1e-12) for earlier, later in zip(times, times[1:]))


def test_history_drops_outliers_and_needs_three_executions():
    from orchestrator.cost.history import history_from

    from orchestrator.results.rows import JobRow

    def row(n: int, times: list[float]) -> JobRow:
        return JobRow("r", f"d{n}", "dot", {"n": n}, "ok", placement="cpu", dtype="float32", data="host",
                      measured_s=1.0, times_s=times)

    found = history_from([row(8, [1.0, 1.02, 0.98, 1.01, 9.0]), row(9, [1.0, 1.1]), row(10, [1.0, 1.05, 2.0])])
    by_n = {m.params["n"]: m for m in found}
    assert set(by_n) == {8, 10}  # n=9: two executions are not enough
    assert by_n[8].centre_s == pytest.approx(1.005) and by_n[8].samples == 4 and by_n[8].dropped == 1
    assert by_n[10].centre_s == pytest.approx(1.05) and by_n[10].dropped == 0  # of three, none is dropped


def test_a_jobs_history_on_one_thread_count_sets_it_against_the_other():
    """On this VM's MKL qr of 2048 x 256 float64 took 33 ms on both cores and 21 on one, where
    the references' shapes run as fast or faster on both: the model chose both cores and, once
    the job had history there, went on choosing them (its history answered for either thread
    count). Each count now has its own history; a job recorded on one is set against the other's
    prediction (without the fit tier's factors, learnt on the counts the runs chose), tries the
    other where its history is 1.4x that and 2 ms more (not for noise), and keeps the faster
    once both are recorded."""
    from orchestrator.cost.calibration import Calibration
    from orchestrator.cost.history import history_from
    from orchestrator.cost.model import predict
    from orchestrator.plan.hardware import hardware_for
    from orchestrator.plan.planner import candidates
    from orchestrator.profile import store
    from orchestrator.results.rows import JobRow
    from orchestrator.workload.model import Job
    from tests.test_alignment import ROOT

    node = store.resolve(str(ROOT / "docs/data/profile-vm-20261128-threads.yaml"))  # one-thread references
    bare = hardware_for(node, calibrated=False)
    cpu = candidates(bare)[0]
    params = {"m": 2048, "n": 256}
    job = Job("q", "qr", params, "float64")
    wide, one = predict(job, cpu, bare, threads=0), predict(job, cpu, bare, threads=1)
    assert predict(job, cpu, bare).threads is None and one.threads == 1 and wide.predicted_s < one.predicted_s

    def learnt(*ran: tuple[int, float]) -> object:
        rows = [JobRow("r", f"q{i}", "qr", params, "ok", placement="cpu", dtype="float64", data="host",
                       measured_s=seconds, times_s=[seconds] * 3, detail={"threads": threads})
                for i, (threads, seconds) in enumerate(ran)]
        history = history_from(rows)
        assert sorted(m.threads for m in history) == sorted(t for t, _ in ran)
        factors = Factors(op="qr", device="cpu", dtype="float64", samples=3, sizes=3, overhead=3.0, work=3.0,
                          median_error_before=0.5, median_error_after=0.0)
        return dataclasses.replace(bare, calibration=Calibration(profile=node.name, fitted="now", runs=1,
                                                                 groups=[factors], history=history))

    noisy = predict(job, cpu, learnt((2, 1.2 * one.predicted_s)))  # slower than one thread, within noise:
    assert (noisy.threads, noisy.basis) == (None, "history")        # the recorded count answers
    slow_wide = learnt((2, 2 * one.predicted_s))  # both cores ran it twice as long as one is predicted
    tried = predict(job, cpu, slow_wide)
    assert tried.threads == 1 and tried.basis == "model"  # not the factors' 3x: they were not learnt there
    assert tried.note.startswith("trying one thread: all its cores took")  # the plan says why
    assert tried.predicted_s == pytest.approx(one.predicted_s)
    assert predict(job, cpu, slow_wide, threads=0).basis == "history"  # a recorded run's own count
    assert predict(job, cpu, slow_wide, threads=1).basis == "fit"
    both = learnt((2, 0.033), (1, 0.021))
    kept = predict(job, cpu, both)
    assert (kept.threads, kept.basis, kept.predicted_s) == (1, "history", pytest.approx(0.021))
    fast_wide = learnt((2, 0.5 * one.predicted_s), (1, one.predicted_s))
    assert predict(job, cpu, fast_wide).threads is None
