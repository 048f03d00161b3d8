"""Measuring through the noise (issue 13): `repeats: auto`, the sentinel every recorded time
carries, calibration on speed-normalised times, and the noise a run reports about itself."""

from __future__ import annotations

import dataclasses
import json
import statistics
import time

import pytest

from orchestrator.cost.history import history_from
from orchestrator.cost.refit import normalised, samples_from
from orchestrator.execute import harness, sentinel
from orchestrator.plan.hardware import hardware_for
from orchestrator.profile import store
from orchestrator.profile.model import Sentinel
from orchestrator.results.noise import noise_of, unsteady
from orchestrator.results.rows import JobRow
from orchestrator.workload.model import AutoRepeats
from tests.cli import orch


def test_median_interval_is_the_order_statistics_interval():
    assert harness.median_interval([1.0] * 7) == float("inf")  # no 95% interval below 8 samples
    assert harness.median_interval([1.0] * 8) == 0.0
    times = [float(v) for v in range(1, 21)]  # j = 5, k = 16 (1-based) for n = 20
    assert harness.median_interval(times) == pytest.approx((16 - 5) / 2 / 10.5)


def test_auto_stops_when_the_median_is_known_and_at_the_budget_when_it_never_is(monkeypatch):
    monkeypatch.setattr(harness, "AUTO", AutoRepeats(budget_s=0.3, least=5))
    _, steady = harness.timed(lambda: sum(range(20_000)), 1, "auto")
    # known to 5% (a busy machine may spend the budget first; then it stopped there)
    assert len(steady) >= 8 and (harness.median_interval(steady) <= 0.05 or sum(steady) >= 0.3)
    state = iter(range(10**6))

    def noisy() -> None:  # alternately 1 ms and 3 ms: the interval never closes to 5%
        time.sleep(0.001 if next(state) % 2 else 0.003)

    started = time.perf_counter()
    _, times = harness.timed(noisy, 0, "auto")
    assert sum(times) >= 0.3 and time.perf_counter() - started < 1.5
    _, fixed = harness.timed(lambda: None, 0, 4)
    assert len(fixed) == 4


def test_warm_up_goes_on_until_executions_stop_getting_faster(monkeypatch):
    monkeypatch.setattr(harness, "AUTO", AutoRepeats(budget_s=1.0))
    calls = []

    def cooling() -> None:  # 8, 6, 4, 2, 2, 2 ... ms: warm from the fourth call
        calls.append(1)
        time.sleep(max(0.008 - 0.002 * (len(calls) - 1), 0.002))

    _, times = harness.timed(cooling, 1, 3, warm_until_warm=True)
    assert len(calls) >= 6 and len(times) == 3 and max(times) < 0.006  # warm: not the cold 8 ms


def test_one_agreeing_pair_is_not_warm():
    """A 64 MB sum over fresh memory on the development VM, ms by execution: the first two
    agree within 10% and the kernel is still 2.6x from warm."""
    cold = iter([4.1, 4.0, 3.3, 2.4, 2.1, 1.6, 1.6, 1.5] + [1.5] * 10)
    _, times = harness.timed(None, 1, 3, warm_until_warm=True, clock=lambda: (None, next(cold) / 1e3))
    assert times == [0.0015] * 3


def test_warm_up_stops_at_its_budget(monkeypatch):
    monkeypatch.setattr(harness, "AUTO", AutoRepeats(warm_budget_s=0.05))
    calls = []

    def wild() -> tuple[None, float]:  # never two alike: warm-up ends at the budget, not at warm_most
        calls.append(1)
        return None, 0.02 * (1 + len(calls) % 2)

    _, times = harness.timed(None, 1, 2, warm_until_warm=True, clock=wild)
    assert len(times) == 2 and len(calls) == 1 + 2 + 2  # the warm-up, 2 more (20 + 40 ms >= 50 ms), the timed


def test_no_warm_up_asked_is_cold_on_the_cpu():
    calls = []
    harness.timed(None, 0, 2, clock=lambda: (calls.append(1), 0.001))
    assert len(calls) == 2


def test_a_probe_is_a_gemm_and_a_copy_reused_for_five_seconds():
    import torch

    sentinel.reset()
    first = sentinel.latest(torch.device("cpu"))
    assert first["gemm_s"] > 0 and first["copy_s"] > 0 and first["device"] == "cpu"
    assert sentinel.latest(torch.device("cpu")) is first
    assert sentinel.latest(torch.device("cpu"), force=True) is not first


def _row(measured: float, probe: float) -> JobRow:
    return JobRow("r", "m", "matmul", {"m": 512, "n": 512, "k": 512}, "ok", placement="cpu", dtype="float32",
                  data="host", measured_s=measured, times_s=[measured] * 3,
                  detail={"sentinel": [{"device": "cpu", "gemm_s": probe, "copy_s": probe, "at": probe}]})


def test_a_wholly_disturbed_run_is_learnt_at_the_profiles_speed():
    """One run measured entirely while the sentinel ran twice as slow as when the machine was
    profiled is learnt at half its times: what the job takes when the machine is itself."""
    hw = hardware_for(store.resolve("cpu-c7i-8xlarge"), calibrated=False)
    cpu = hw.node.cpu.model_copy(update={"sentinel": Sentinel(gemm_s=1e-3, copy_s=1e-3)})
    hw = dataclasses.replace(hw, node=hw.node.model_copy(update={"cpu": cpu}))
    rows = normalised([_row(2e-3, 2e-3), _row(2e-3, 2e-3)], hw)
    assert [r.measured_s for r in rows] == pytest.approx([1e-3, 1e-3])


def test_a_disturbed_run_is_learnt_at_the_usual_speed():
    """A profile without a probe (a reference one): the same job measured at 2.0 ms while the
    sentinel ran twice as slow as its usual (the median probe recorded) is learnt as 1.0 ms."""
    hw = hardware_for(store.resolve("cpu-c7i-8xlarge"), calibrated=False)
    rows = normalised([_row(1e-3, 1e-3), _row(1e-3, 1e-3), _row(2e-3, 2e-3)], hw)
    assert [r.measured_s for r in rows] == pytest.approx([1e-3, 1e-3, 1e-3])
    assert [s.measured_s for s in samples_from(rows, hw)] == pytest.approx([1e-3] * 3)
    assert history_from(rows)[0].centre_s == pytest.approx(1e-3)
    # a probe beyond 3x is not believed further than 3x
    rows = normalised([_row(1e-3, 1e-3), _row(1e-3, 1e-3), _row(1e-2, 1e-2)], hw)
    assert rows[2].measured_s == pytest.approx(1e-2 / 3)


def test_a_job_disturbed_between_the_probes_is_not_learnt_from():
    """A batched_matmul's seven executions here, in ms: the sentinel's probe before it read the
    machine as usual, the job was disturbed while it ran. Neither tier learns from it; a job whose
    executions agree, at the same probe, is learnt."""
    hw = hardware_for(store.resolve("cpu-c7i-8xlarge"), calibrated=False)
    disturbed = dataclasses.replace(_row(0.543e-3, 1e-3), times_s=[t / 1e3 for t in (0.543, 3.108, 0.244, 1.646, 0.218,
                                                                                   1.306, 0.188)])
    steady = dataclasses.replace(_row(0.2e-3, 1e-3), times_s=[t / 1e3 for t in (0.19, 0.2, 0.21, 0.2, 0.22, 0.2, 0.19)])
    assert [s.measured_s for s in samples_from([disturbed, steady], hw)] == [0.2e-3]
    assert [m.centre_s for m in history_from([disturbed, steady])] == pytest.approx([0.2e-3])
    # of three executions: the demo's matmul of 512 (runs 0.19 ms) is disturbed, a 10 µs op's jitter is not
    few = dataclasses.replace(_row(5.9e-3, 1e-3), times_s=[5.9e-3, 7.0e-3, 1.6e-3])
    jitter = dataclasses.replace(_row(10e-6, 1e-3), times_s=[10e-6, 13e-6, 7e-6])
    assert [s.measured_s for s in samples_from([few, jitter], hw)] == [10e-6]
    # of seven: a 12 µs dot's microseconds of jitter on a busy machine (spread 0.37) are learnt
    busy = dataclasses.replace(_row(12e-6, 1e-3), times_s=[t * 1e-6 for t in (12, 9, 15, 12, 30, 8, 16)])
    assert [s.measured_s for s in samples_from([busy], hw)] == [12e-6]


def test_a_size_run_only_while_disturbed_answers_from_its_fastest_executions():
    """A matmul of 300^3 (it runs 0.22 ms) timed 0.22, 2.10 and 3.39 ms in one run. It ran at
    that size, so history answers there, from its executions within DISTURBED_SPREAD of the
    fastest (the next run measured 0.22); the fit tier learns the same time where the op has no
    steady job, and nothing from it where it has one. Once a steady run of that size is
    recorded, it answers alone."""
    hw = hardware_for(store.resolve("cpu-c7i-8xlarge"), calibrated=False)
    disturbed = dataclasses.replace(_row(2.10e-3, 1e-3), times_s=[0.22e-3, 2.10e-3, 3.39e-3])
    assert [s.measured_s for s in samples_from([disturbed], hw)] == pytest.approx([0.22e-3])
    elsewhere = dataclasses.replace(_row(1e-3, 1e-3), params={"m": 1024, "n": 512, "k": 512})
    assert [s.measured_s for s in samples_from([disturbed, elsewhere], hw)] == [1e-3]
    [measured] = history_from([disturbed])
    assert measured.centre_s == pytest.approx(0.22e-3) and (measured.samples, measured.dropped) == (1, 2)
    five = dataclasses.replace(disturbed, times_s=[0.50e-3, 0.23e-3, 0.21e-3, 1.9e-3, 2.2e-3])
    assert [(m.centre_s, m.samples, m.dropped) for m in history_from([five])] == [(pytest.approx(0.22e-3), 2, 3)]
    steady = dataclasses.replace(_row(0.25e-3, 1e-3), times_s=[0.25e-3, 0.24e-3, 0.26e-3])
    assert [m.centre_s for m in history_from([disturbed, steady])] == pytest.approx([0.25e-3])
    # fewer than MIN_HISTORY_SAMPLES executions timed at a size: no history, disturbed or not
    short = dataclasses.replace(disturbed, times_s=[0.22e-3, 2.10e-3])
    assert history_from([short]) == []


def test_a_probe_near_nominal_is_the_sentinels_own_noise_and_leaves_the_time_alone():
    """Probes within SPEED_UNSEEN of the profile's (a quiet machine reads 0.79-1.20 of it here)
    are not a slowdown: the time is learnt as measured. One beyond it is."""
    hw = hardware_for(store.resolve("cpu-c7i-8xlarge"), calibrated=False)
    cpu = hw.node.cpu.model_copy(update={"sentinel": Sentinel(gemm_s=1e-3, copy_s=1e-3)})
    hw = dataclasses.replace(hw, node=hw.node.model_copy(update={"cpu": cpu}))
    rows = normalised([_row(2e-3, 0.75e-3), _row(2e-3, 1.4e-3), _row(2e-3, 1.6e-3), _row(2e-3, 0.6e-3)], hw)
    assert [r.measured_s for r in rows] == pytest.approx([2e-3, 2e-3, 2e-3 / 1.6, 2e-3 / 0.6])


def test_noise_is_the_spread_of_the_distinct_probes():
    rows = [_row(1e-3, 1e-3), _row(1e-3, 1e-3), _row(1e-3, 1.2e-3), JobRow("r", "f", "dot", {"n": 8}, "failed")]
    noise = noise_of(rows)
    assert noise["cpu"]["probes"] == 2 and noise["cpu"]["spread"] == pytest.approx(0.2 / 1.1, rel=1e-3)
    assert noise_of([]) == {}


def test_a_run_with_repeats_auto_reports_its_noise_and_is_history_next_time(tmp_path, orch_home):
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: w\ndefaults: {repeats: auto}\njobs:\n"
                        "  - {name: d, op: dot, n: 100K}\n  - {name: m, op: matmul, m: 128, n: 128, k: 128}\n")
    ran = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--format", "json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["noise"]["cpu"]["probes"] >= 2 and report["noise"]["cpu"]["spread"] >= 0  # start and end
    for job in report["jobs"]:
        assert len(job["times_s"]) >= 5 and job["measured_s"] == pytest.approx(statistics.median(job["times_s"]))
    plan = orch("plan", str(workload), "--profile", "cpu-c7i-8xlarge", "--format", "json")
    assert {job["basis"] for job in json.loads(plan.stdout)["jobs"]} == {"history"}
    shown = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--no-learn")
    assert "noise (cpu): the sentinel's speed varied" in shown.stdout


def test_a_cpu_probe_runs_at_the_profiles_width_whatever_the_job_asked():
    """A job on one thread probed at one thread read 2x slow; the probe sizes the pools to every
    core this process may use, and gives them back."""
    import os

    import torch

    from orchestrator.execute import sentinel

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        found = sentinel.probe(torch.device("cpu"))
        assert torch.get_num_threads() == 1
        assert found["threads"] == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)


def test_unsteady_is_a_probe_three_times_slower_than_another():
    rows = [_row(1e-3, 1e-3), _row(1e-3, 1.2e-3)]
    assert noise_of(rows)["cpu"]["slowest_x"] == pytest.approx(1.2, rel=1e-3)
    assert unsteady(noise_of(rows)) == {}
    shaken = noise_of(rows, [{"device": "cpu", "gemm_s": 4e-3, "copy_s": 4e-3, "at": 9}])
    assert unsteady(shaken) == {"cpu": pytest.approx(4.0)}


def test_a_run_whose_sentinel_ran_far_slower_at_its_end_is_not_learnt_from(tmp_path, orch_home, monkeypatch):
    """The probes at the jobs' start read normal, the run's end 20x slow (a test suite beside a
    training run did that here): the run says so and nothing is learnt from it, now or later."""
    from orchestrator.backends.dask import DaskBackend
    from orchestrator.cost.calibration import calibration_path
    from orchestrator.results.store import ResultStore
    from orchestrator.run.runner import RunOptions, run_workload
    from orchestrator.workload.loader import load

    real = DaskBackend.probe

    def slow_end(self, threads=None):
        return [{**p, "gemm_s": 20 * p["gemm_s"], "copy_s": 20 * p["copy_s"]} for p in real(self, threads)]

    monkeypatch.setattr(DaskBackend, "probe", slow_end)
    path = tmp_path / "w.yaml"
    path.write_text("version: 1\nname: w\njobs:\n  - {name: d, op: dot, n: 100K}\n  - {name: a, op: axpy, n: 100K}\n")
    hw = hardware_for(store.resolve("cpu-c7i-8xlarge"), calibrated=False)
    report = run_workload(load(path), hw, RunOptions())
    assert all(job["status"] == "ok" for job in report.jobs)
    assert report.noise["cpu"]["slowest_x"] >= 3
    assert any("this run is not learnt from" in w and "slower" in w for w in report.warnings), report.warnings
    assert not calibration_path("cpu-c7i-8xlarge").exists()
    with ResultStore() as results:
        assert results.jobs_for_profile("cpu-c7i-8xlarge")[0] == []
