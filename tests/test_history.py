"""The tiers that answer a plan (the contract's `basis`): recorded timings at this very size
(`history`), the factors learnt from other sizes (`fit`), or the profile and formulas alone
(`model`)."""

from __future__ import annotations

import json
import statistics

import pytest

from orchestrator.cost.history import MIN_TIMINGS, History, footprint
from tests.cli import orch

KEY = footprint("dot", {"n": 5}, "float32", "host", "cpu")


def test_the_centre_drops_a_disturbed_timing():
    """One timing 50x the others (a neighbour's burst) does not move the answer."""
    assert History({KEY: (1.0, 1.1, 0.9, 1.05, 50.0)}).centre(KEY) == pytest.approx(1.025)


def test_too_few_timings_give_no_answer():
    assert History({KEY: (1.0,) * (MIN_TIMINGS - 1)}).centre(KEY) is None
    assert History({KEY: (1.0,) * MIN_TIMINGS}).centre(KEY) == 1.0
    assert History({}).centre(KEY) is None


def test_rows_are_keyed_by_footprint_and_failed_jobs_ignored():
    rows = [{"status": "ok", "measured_s": 2.0, "times_s": [2.0, 2.1, 1.9], "placement": "cpu", "op": "dot",
             "params": {"n": 5}, "dtype": "float32", "data": "host"},
            {"status": "failed", "measured_s": None, "times_s": None, "placement": "cpu", "op": "dot",
             "params": {"n": 5}, "dtype": "float32", "data": "host"}]
    assert History.from_rows(rows).timings == {KEY: (2.0, 2.1, 1.9)}


def test_plan_says_model_then_history_then_fit(tmp_path, orch_home):
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: w\njobs:\n  - {name: d, op: dot, n: 2M, repeats: 5}\n"
                        "  - {name: c, op: cholesky, n: 384, repeats: 5}\n")
    other = tmp_path / "other.yaml"
    other.write_text("version: 1\nname: o\njobs:\n  - {name: d, op: dot, n: 3M}\n  - {name: c, op: cholesky, n: 512}\n")

    def plan(path) -> dict:
        result = orch("plan", str(path), "--profile", "cpu-c7i-8xlarge", "--format", "json")
        assert result.returncode == 0, result.stderr
        return {job["name"]: job for job in json.loads(result.stdout)["jobs"]}

    assert {job["basis"] for job in plan(workload).values()} == {"model"}  # a fresh ORCH_HOME
    ran = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--format", "json")
    assert ran.returncode == 0, ran.stderr
    measured = {job["name"]: job for job in json.loads(ran.stdout)["jobs"]}
    again = plan(workload)
    for name, job in again.items():
        assert job["basis"] == "history"
        assert job["predicted_s"] == pytest.approx(statistics.median(measured[name]["times_s"]), rel=0.35)
    assert {job["basis"] for job in plan(other).values()} == {"fit"}  # learnt at other sizes
