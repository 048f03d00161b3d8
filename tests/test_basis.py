"""The contract's `basis`: which part of orch answered a plan. `fit` where calibration factors
learnt from recorded runs apply, `model` on a fresh ORCH_HOME (no `history` tier yet)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.cli import orch


def test_plan_says_model_then_fit(tmp_path, orch_home):
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: w\njobs:\n  - {name: d, op: dot, n: 2M, repeats: 5}\n"
                        "  - {name: c, op: cholesky, n: 384, repeats: 5}\n")
    other = tmp_path / "other.yaml"
    other.write_text("version: 1\nname: o\njobs:\n  - {name: d, op: dot, n: 3M}\n  - {name: c, op: cholesky, n: 512}\n")

    def plan(path) -> dict[str, dict]:
        result = orch("plan", str(path), "--profile", "cpu-c7i-8xlarge", "--format", "json")
        assert result.returncode == 0, result.stderr
        return {job["name"]: job for job in json.loads(result.stdout)["jobs"]}

    before = plan(workload)
    assert {job["basis"] for job in before.values()} == {"model"}  # a fresh ORCH_HOME
    ran = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--format", "json")
    assert ran.returncode == 0, ran.stderr
    assert {job["basis"] for job in plan(other).values()} == {"fit"}  # learnt from the run, at other sizes
    after = plan(workload)
    learnt = yaml.safe_load((orch_home / "calibration" / "cpu-c7i-8xlarge.yaml").read_text())
    for name, op in (("d", "dot"), ("c", "cholesky")):
        groups = {g["dtype"]: g for g in learnt["groups"] if g["op"] == op and g["device"] == "cpu"}
        factors = groups.get("float32") or groups["*"]  # as Calibration.factors looks them up
        old, new = before[name]["candidates"][0]["terms"], after[name]["candidates"][0]["terms"]
        assert after[name]["basis"] == "fit"
        assert new["compute_s"] == pytest.approx(old["compute_s"] * factors["work"], rel=1e-3)
        assert new["overhead_s"] == pytest.approx(old["overhead_s"] * factors["overhead"], rel=1e-3)
