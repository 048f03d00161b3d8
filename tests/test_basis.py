"""The contract's `basis`: which tier of orch answered a plan. `model` on a fresh ORCH_HOME;
after one run, `history` for each job at the very size it ran, `fit` for its op at other sizes
of the same dtype, and `model` again for a dtype never run and for sizes far outside the run's."""

from __future__ import annotations

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
    measured = {job["name"]: job for job in json.loads(ran.stdout)["jobs"]}

    after = _plan(ran_path)
    for name in ("d", "c"):
        assert after[name]["basis"] == "history"
        # the median of its executions (none of 5 is 3 MADs out in a quiet run; if one is, the
        # median of the rest stays within the range measured), taken at nominal speed: divided
        # by how slow the sentinel read the machine beside it against the run's median probe
        # (jobs run in several worker processes, each probing on its own: a few % apart)
        times = sorted(measured[name]["times_s"])
        assert times[0] / 1.1 <= after[name]["predicted_s"] <= times[-1] * 1.1

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
