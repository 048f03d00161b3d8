"""`orch plan` end to end: the seed observations on the bundled H100 profile, CPU-only
profiles, multi-GPU and multi-node placements, objectives, golden outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.placement import Placement
from tests.cli import GOLDEN, GOLDEN_COMMANDS, golden_output, matches_golden, orch

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


def _plan(workload: str | Path, *args: str) -> dict:
    result = orch("plan", str(workload), "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _by_name(plan: dict) -> dict[str, dict]:
    return {job["name"]: job for job in plan["jobs"]}


@pytest.fixture(scope="module")
def h100_plan() -> dict[str, dict]:
    return _by_name(_plan(DATA / "must_show.yaml", "--profile", "h100-sxm"))


def test_contract_fields(h100_plan):
    for job in h100_plan.values():
        assert {"name", "op", "placement", "predicted_s", "bound", "reason", "candidates"} <= set(job)
        assert job["bound"] in {"compute", "memory", "transfer", "communication", "overhead"}
        for candidate in job["candidates"]:
            assert {"placement", "feasible"} <= set(candidate)
            assert candidate["feasible"] or candidate["note"]


def test_tiny_jobs_stay_on_cpu(h100_plan):
    assert h100_plan["tiny-dot"]["placement"] == "cpu"
    assert h100_plan["tiny-matmul"]["placement"] == "cpu"


def test_python_loop_is_cpu_only(h100_plan):
    loop = h100_plan["loop"]
    assert loop["placement"] == "cpu"
    (gpu,) = [c for c in loop["candidates"] if c["placement"] == "gpu"]
    assert gpu["feasible"] is False and "CPU only" in gpu["note"]


def test_big_dot_depends_on_where_the_data_is(h100_plan):
    host, device = h100_plan["dot-host"], h100_plan["dot-device"]
    assert host["placement"] == "cpu"
    gpu_from_host = next(c for c in host["candidates"] if c["placement"] == "gpu")
    assert gpu_from_host["terms"]["transfer_s"] > next(
        c for c in host["candidates"] if c["placement"] == "cpu")["terms"]["memory_s"]
    assert device["placement"] == "gpu"


def test_large_compute_goes_to_gpu_and_bf16_beats_fp32(h100_plan):
    assert h100_plan["gemm-8k"]["placement"] == "gpu"
    assert h100_plan["mlp-large"]["placement"] == "gpu"
    assert h100_plan["gemm-8k-bf16"]["predicted_s"] < h100_plan["gemm-8k"]["predicted_s"]
    cpu = next(c for c in h100_plan["gemm-8k"]["candidates"] if c["placement"] == "cpu")
    assert cpu["predicted_s"] / h100_plan["gemm-8k"]["predicted_s"] > 10


def test_too_large_for_gpu_memory_is_infeasible_with_note(h100_plan):
    huge = h100_plan["gemm-huge"]
    gpu = next(c for c in huge["candidates"] if c["placement"] == "gpu")
    assert gpu["feasible"] is False and "exceeds" in gpu["note"]
    assert huge["placement"] == "cpu"


@pytest.mark.parametrize("profile", ["cpu-c7i-48xlarge", "cpu-c7i-8xlarge-x4"])
def test_cpu_only_profiles_put_everything_on_cpu(profile):
    plan = _plan(DATA / "must_show.yaml", "--profile", profile)
    placed = [job["placement"] for job in plan["jobs"] if job["placement"] is not None]
    assert len(placed) >= len(plan["jobs"]) - 1  # 120 GB matmul: B replicated does not fit 64 GiB nodes
    assert {placement.split("@")[0] for placement in placed} == {"cpu"}


def test_a_job_that_fits_nowhere_is_reported_not_placed():
    result = orch("plan", str(DATA / "must_show.yaml"), "--profile", "cpu-c7i-8xlarge", "--format", "json")
    assert result.returncode == 0, result.stderr
    jobs = _by_name(json.loads(result.stdout))
    assert jobs["gemm-huge"]["placement"] is None and "fits no placement" in jobs["gemm-huge"]["reason"]
    assert "warning" in result.stderr and "gemm-huge" in result.stderr
    assert {job["placement"] for name, job in jobs.items() if name != "gemm-huge"} == {"cpu"}


def test_second_gpu_helps_only_when_work_outweighs_transfer():
    plan = _by_name(_plan(DATA / "multi_gpu.yaml", "--profile", "h100-sxm-8"))
    small = {c["placement"]: c for c in plan["small-matmul"]["candidates"]}
    assert plan["small-matmul"]["placement"] in ("gpu", "gpu:2")
    assert small["gpu:8"]["predicted_s"] > small[plan["small-matmul"]["placement"]]["predicted_s"]
    moved = small["gpu:8"]["terms"]["transfer_s"] + small["gpu:8"]["terms"]["communication_s"]
    assert moved > small["gpu:8"]["terms"]["compute_s"]
    assert plan["huge-matmul"]["placement"].startswith("gpu:")
    big = plan["huge-matmul"]
    one = next(c for c in big["candidates"] if c["placement"] == "gpu")
    assert one["feasible"] is False  # 240 GB does not fit one H100, it does split across eight
    assert plan["big-training"]["placement"].startswith("gpu:")


def test_multi_node_placements_offered_and_accepted():
    plan = _by_name(_plan(DATA / "multi_gpu.yaml", "--profile", "h100-sxm-8-x4"))
    placements = {c["placement"] for c in plan["huge-matmul"]["candidates"]}
    assert {"cpu@2", "cpu@4", "gpu:8@2", "gpu:8@4"} <= placements
    refused = orch("plan", str(DATA / "multi_gpu.yaml"), "--profile", "h100-sxm-8-x4", "--placement", "gpu:8@2")
    assert refused.returncode == 3 and "1-D FFT" in refused.stderr  # fft does not split across nodes
    forced = _plan(DATA / "multi_node.yaml", "--profile", "cpu-c7i-8xlarge-x4", "--placement", "cpu@4")
    assert {job["placement"] for job in forced["jobs"]} == {"cpu@4"}
    chosen = _by_name(_plan(DATA / "multi_node.yaml", "--profile", "cpu-c7i-8xlarge-x4"))
    assert chosen["matmul-16k"]["placement"].startswith("cpu@")  # 8.8 TFLOP outweighs the network
    # the batch scheduler may move a job off its own best, never to a placement more than
    # MOVE_AT_MOST_SLOWER times slower for it (dot-1g: cpu@4 0.021 s, cpu@2 0.036 s, cpu 0.067 s)
    from orchestrator.plan.planner import MOVE_AT_MOST_SLOWER

    for job in chosen.values():
        best = min(c["predicted_s"] for c in job["candidates"] if c["feasible"])
        assert job["predicted_s"] <= MOVE_AT_MOST_SLOWER * best, job
    assert chosen["dot-1g"]["placement"] == "cpu@2"


def test_objectives_differ_and_need_their_figures(tmp_path):
    time_plan = _plan(DATA / "must_show.yaml", "--profile", "h100-sxm", "--objective", "time")
    energy = _plan(DATA / "must_show.yaml", "--profile", "h100-sxm", "--objective", "energy")
    assert energy["objective"] == "energy"
    for job in energy["jobs"]:
        feasible = [c for c in job["candidates"] if c["feasible"]]
        chosen = next(c for c in feasible if c["placement"] == job["placement"])
        assert chosen["energy_j"] == min(c["energy_j"] for c in feasible)
    assert time_plan["makespan_s"] > 0
    no_price = tmp_path / "noprice.yaml"
    no_price.write_text("version: 1\nname: np\ncpu: {cores_physical: 2, cores_logical: 2, memory_total_bytes: 8000000000}\n")
    result = orch("plan", str(DATA / "must_show.yaml"), "--profile", str(no_price), "--objective", "cost")
    assert result.returncode == 2 and "price_usd_per_hour" in result.stderr


def test_forced_gpu_on_cpu_only_profile_is_exit_3():
    result = orch("plan", str(DATA / "must_show.yaml"), "--profile", "cpu-c7i-8xlarge", "--placement", "gpu")
    assert result.returncode == 3
    assert "no usable GPU" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_explain_prints_every_term():
    result = orch("plan", str(DATA / "must_show.yaml"), "--profile", "h100-sxm", "--explain", "dot-host")
    assert result.returncode == 0, result.stderr
    for term in ("overhead", "compute", "memory", "transfer", "communication"):
        assert term in result.stdout
    missing = orch("plan", str(DATA / "must_show.yaml"), "--profile", "h100-sxm", "--explain", "dot-hots")
    assert missing.returncode == 2 and "did you mean 'dot-host'" in missing.stderr


def test_batch_output_has_devices_and_starts():
    plan = _plan(DATA / "multi_gpu.yaml", "--profile", "h100-sxm-8")
    for job in plan["jobs"]:
        assert job["devices"] and job["start_s"] >= 0
        assert job["start_s"] + job["predicted_s"] <= plan["makespan_s"] + 1e-9


@pytest.mark.parametrize("name", [name for name in GOLDEN_COMMANDS if name.startswith("plan_")])
def test_golden_plan(name):
    """The plan output, byte for byte (`python -m tests.cli regenerate` rewrites the files)."""
    result = golden_output(name)
    assert result.returncode == 0, result.stderr
    assert matches_golden(name, result.stdout)


def test_golden_plan_figures_by_hand():
    """Figures of the golden h100-sxm plan that follow from profiles/h100-sxm.yaml by hand."""
    plan = json.loads((GOLDEN / "plan_demo_h100-sxm.json").read_text())
    jobs = {job["name"]: job for job in plan["jobs"]}

    def terms(job: str, placement: str) -> dict:
        return next(c for c in jobs[job]["candidates"] if c["placement"] == placement)["terms"]

    # matmul 1024 x 256 x 256 on the GPU: 2*1024*256*256 = 134,217,728 FLOPs at 67e12 FLOP/s x
    # 0.72 achievable, plus the 6 us cuBLAS ramp: 2.78 us + 6 us = 8.78 us
    assert terms("gemm-sweep[m=1024]", "gpu")["compute_s"] == pytest.approx(8.78e-6, rel=1e-3)
    # its inputs, (1024*256 + 256*256) * 4 = 1,310,720 bytes of pageable host memory at the
    # profile's 2.0e10 B/s, the 1 MiB result back at 2.0e10 (no d2h pageable figure: the h2d one),
    # and two 10 us copy latencies: 65.5 + 52.4 + 20 = 137.9 us
    assert terms("gemm-sweep[m=1024]", "gpu")["transfer_s"] == pytest.approx(137.9e-6, rel=1e-3)
    # the Python loop: 100,000 elements at 30 ns each = 3 ms, on the CPU only
    assert terms("python-loop-dot", "cpu")["compute_s"] == pytest.approx(3e-3, rel=1e-9)
    assert [c["feasible"] for c in jobs["python-loop-dot"]["candidates"]] == [True, False]


def test_plan_without_profile_profiles_quickly_first(first_plan):
    """The session's first plan ran on a fresh ORCH_HOME (conftest.first_plan)."""
    assert "profiling quickly first" in first_plan.result.stderr
    assert json.loads(first_plan.result.stdout)["jobs"]
    assert list((first_plan.home / "profiles").glob("*.yaml"))
    again = orch("plan", "workloads/demo.yaml", "--format", "json", env={"ORCH_HOME": str(first_plan.home)})
    assert again.returncode == 0, again.stderr
    assert "profiling" not in again.stderr


def test_a_jobs_own_objective_is_used(tmp_path):
    """`objective: cost` on one job: that job is placed by dollars, the rest by time."""
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: w\njobs:\n"
                        "  - {name: fast, op: matmul, m: 8K, n: 8K, k: 8K, data: device}\n"
                        "  - {name: cheap, op: matmul, m: 8K, n: 8K, k: 8K, data: device, objective: energy}\n")
    plan = _plan(workload, "--profile", "h100-sxm-8")
    fast, cheap = plan["jobs"]
    assert fast["objective"] == "time" and cheap["objective"] == "energy"
    by_energy = min((c for c in cheap["candidates"] if c["feasible"]), key=lambda c: c["energy_j"])
    by_time = min((c for c in fast["candidates"] if c["feasible"]), key=lambda c: c["predicted_s"])
    assert cheap["placement"] == by_energy["placement"] != by_time["placement"]


def test_an_unexpected_internal_error_is_exit_3_in_one_line(monkeypatch, capsys):
    """Exit 1 means failed jobs; a bug inside orch is the environment's code, 3, in one line."""
    from orchestrator import cli
    from orchestrator.plan import planner

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(planner, "make_plan", broken)
    with pytest.raises(SystemExit) as exited:
        cli.main(["plan", "workloads/demo.yaml", "--profile", "h100-sxm"])
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: boom" in err and "Traceback" not in err


def test_cpu_jobs_leave_each_gpu_a_host_core():
    """A batch on the CPU and a GPU of one host: the CPU jobs are planned (and run) on the cores
    less one per GPU, which a GPU job's host thread keeps busy while it waits on the GPU."""
    from orchestrator.plan.hardware import hardware_for
    from orchestrator.plan.planner import make_plan
    from orchestrator.profile.store import resolve
    from orchestrator.workload.loader import load

    hw = hardware_for(resolve("h100-sxm"), calibrated=False)
    cores = hw.node.cpu.cores_logical
    workload = load(ROOT / "workloads/demo.yaml")
    mixed = make_plan(workload, hw)
    assert {jp.chosen.placement.device for jp in mixed.jobs} == {"cpu", "gpu"}
    assert mixed.cpu_threads == cores - len(hw.gpus) and mixed.notes
    alone = make_plan(workload, hw, shared_host=False)  # an existing cluster: its workers say
    assert alone.cpu_threads is None and not alone.notes
    for shared, full in zip(mixed.jobs, alone.jobs):
        if shared.chosen.placement.device == "cpu" == full.chosen.placement.device and shared.job.op != "python_dot":
            assert shared.chosen.predicted_s > full.chosen.predicted_s  # fewer cores, priced so
    forced = make_plan(workload, hw, forced=Placement.parse("cpu"))  # nothing on the GPU: every core
    assert forced.cpu_threads is None
    data = _plan(ROOT / "workloads/demo.yaml", "--profile", "h100-sxm")
    assert data["cpu_threads"] == cores - 1 and "keeps one" in data["notes"][0]


def test_a_job_is_planned_with_the_warm_ups_the_harness_runs():
    """The harness warms a job with a warm-up (and every GPU job) until three executions agree,
    within half a second; `warmup: 0` on a CPU stays cold. The plan holds the devices as long."""
    from orchestrator.cost.model import Prediction
    from orchestrator.plan.planner import warmups
    from orchestrator.workload.model import Job

    def count(warmup: int, device: str, predicted_s: float, repeats: int | str = 3) -> int:
        job = Job(name="j", op="dot", params={"n": 1000}, warmup=warmup, repeats=repeats)
        return warmups(job, Prediction(Placement(device, int(device == "gpu")), True, predicted_s, "memory"))

    assert count(1, "cpu", 1e-3) == 3 and count(5, "cpu", 1e-3) == 5
    assert count(0, "cpu", 1e-3) == 0 and count(0, "cpu", 1e-3, "auto") == 3
    assert count(0, "gpu", 1e-3) == 3
    assert count(1, "cpu", 1.0) == 2  # one more after the warm-up spends the 0.5 s budget
