"""Tiny jobs in groups (issue 16): one engine task runs many jobs, each still its own record,
status, attempts and retry; a failing job never fails its neighbours; a worker that dies re-runs
only the unfinished jobs of its group; an interrupted run resumes without re-running any job
that was recorded, grouped or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from orchestrator.backends.base import Outcome, failed_group
from orchestrator.execute.task import JobResult
from orchestrator.results.rows import JobRow
from orchestrator.run import groups
from tests.cli import orch


def _dots(folder: Path, name: str, count: int, extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\njobs:\n  - name: d\n    op: dot\n    n: 1000\n{extra}"
                    f"    sweep: {{seed: {list(range(count))}}}\n")
    return path


def _rows(run_id: str) -> dict[str, JobRow]:
    from orchestrator.results.store import ResultStore

    store = ResultStore()
    try:
        return {row.name: row for row in store.jobs(run_id)}
    finally:
        store.close()


def test_groups_keep_plan_order_fill_to_the_target_and_split_by_shape():
    jobs = [groups.Tiny(f"j{i}", 0.004, (2, 0)) for i in range(30)] + [groups.Tiny("g0", 0.001, (2, 1))]
    formed = groups.form(jobs, slots=1, prefix="p")
    cpu = [g for g in formed if g.shape == (2, 0)]
    assert [m for g in cpu for m in g.members] == [f"j{i}" for i in range(30)]  # every job once, in order
    assert all(g.busy_s <= groups.GROUP_TARGET_S * 1.0001 for g in cpu)
    assert [len(g.members) for g in cpu] == [12, 12, 6]  # 0.05 s of 4 ms jobs
    assert [g.members for g in formed if g.shape == (2, 1)] == [["g0"]]
    assert len({g.key for g in formed}) == len(formed)


def test_groups_leave_every_slot_work_and_cap_their_size():
    few = [groups.Tiny(f"j{i}", 0.001, (1, 0)) for i in range(8)]
    assert len(groups.form(few, slots=2, prefix="p")) == 4  # 8 ms over 2 slots: 2 groups a slot
    many = [groups.Tiny(f"j{i}", 0.0, (1, 0)) for i in range(1000)]
    sizes = [len(g.members) for g in groups.form(many, slots=1, prefix="p")]
    assert max(sizes) <= groups.GROUP_MAX_JOBS and sum(sizes) == 1000
    assert not groups.tiny(groups.GROUP_JOBS_BELOW_S) and groups.tiny(groups.GROUP_JOBS_BELOW_S / 2)


def test_a_group_the_engine_gave_up_on_keeps_what_it_finished():
    done = JobResult(1.0, [1.0], 0.0, ["cpu"], "h", workers=["w1"], group="g")
    entry = {"key": "a", "result": done.as_dict(), "runs": [{"worker": "w1", "time": 1.0}]}
    journal = [{"kind": "start", "key": "a", "worker": "w1", "time": 1.0}, {"kind": "done", "key": "a", "entry": entry},
               {"kind": "start", "key": "b", "worker": "w1", "time": 2.0},
               {"kind": "start", "key": "b", "worker": "w2", "time": 3.0}]
    a, b, c = failed_group(["a", "b", "c"], journal, "KilledWorker: gave up", "KilledWorker")
    assert a == Outcome("a", done, runs=entry["runs"])  # the journal's plain data read back whole
    assert b.system and b.runs == [{"worker": "w1", "time": 2.0}, {"worker": "w2", "time": 3.0}]
    assert c.result is None and not c.system and c.error.startswith("GroupFailed: not run")


def test_tiny_jobs_ride_in_groups_and_a_failing_one_fails_alone():
    workload = _dots(Path(os.environ["ORCH_HOME"]).parent, "tiny", 60)
    result = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--format", "json",
                  env={"ORCH_FAIL_JOBS": "d[seed=7],d[seed=31]:1"}, timeout=300)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    jobs = {job["name"]: job for job in report["jobs"]}
    assert jobs["d[seed=7]"]["status"] == "failed" and jobs["d[seed=7]"]["error"].startswith("InjectedFailure")
    assert jobs["d[seed=31]"]["status"] == "failed" and jobs["d[seed=31]"]["attempts"] == 1
    assert sum(job["status"] == "ok" for job in report["jobs"]) == 58
    rows = _rows(report["run_id"])
    grouped = Counter(row.detail.get("group") for row in rows.values() if row.status == "ok")
    assert None not in grouped and 1 < len(grouped) < 10, grouped  # a few tasks, not 60
    # the failed job's neighbours in its group ran after it, in the same task
    group_of_7 = rows["d[seed=8]"].detail["group"]
    assert rows["d[seed=6]"].detail["group"] == group_of_7 or rows["d[seed=9]"].detail["group"] == group_of_7


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_a_worker_dying_in_a_group_reruns_only_its_unfinished_jobs(backend, tmp_path):
    if backend == "ray":
        pytest.importorskip("ray")
    workload = _dots(tmp_path, "crash", 40)
    env = {"ORCH_CRASH_JOBS": "d[seed=12]", "ORCH_CRASH_MARKERS": str(tmp_path)}
    result = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--format", "json", "--backend", backend,
                  env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [job["status"] for job in report["jobs"]] == ["ok"] * 40
    rows = _rows(report["run_id"])
    crashed = rows["d[seed=12]"]
    group = crashed.detail["group"]
    members = [f"d[seed={i}]" for i in range(40) if rows[f"d[seed={i}]"].detail["group"] == group]
    assert crashed.attempts == 2, crashed
    (lost,) = crashed.detail["failures"]
    assert lost["error_type"] == "WorkerDied"
    if backend == "dask":
        assert "killed by signal 9 (SIGKILL)" in lost["error"], lost
    before = [name for name in members if int(name[7:-1]) < 12]
    after = [name for name in members if int(name[7:-1]) > 12]
    assert before, "the crash should land mid-group"
    dead_pid = rows[before[0]].detail["pid"]
    for name in before:  # finished before the death: kept as they were, never run again
        assert rows[name].attempts == 1 and rows[name].detail["pid"] == dead_pid
    for name in after + ["d[seed=12]"]:
        assert rows[name].attempts == 1 or name == "d[seed=12]"
        assert rows[name].detail["pid"] != dead_pid


def test_orch_killed_mid_run_resumes_without_rerunning_grouped_jobs(measured_profile, tmp_path):
    workload = _dots(tmp_path, "resume", 3000)
    run = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(workload), "--profile",
                            str(measured_profile), "--format", "json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    from orchestrator.results.store import ResultStore

    deadline, state = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        store = ResultStore()
        try:
            found = store.runs()
        finally:
            store.close()
        if found and found[0].done >= 300:
            state = found[0]
            break
        assert run.poll() is None, run.communicate()[1]
        time.sleep(0.05)
    assert state is not None, "no progress"
    children = psutil.Process(run.pid).children(recursive=True)
    run.kill()
    run.wait(timeout=30)
    psutil.wait_procs(children, timeout=60)
    before = {name: row for name, row in _rows(state.run_id).items() if row.status == "ok"}
    assert 300 <= len(before) < 3000
    result = orch("run", str(workload), "--profile", str(measured_profile), "--resume", state.run_id,
                  "--format", "json", timeout=300)
    assert result.returncode == 0, result.stderr
    jobs = {job["name"]: job for job in json.loads(result.stdout)["jobs"]}
    assert len(jobs) == 3000 and all(job["status"] == "ok" for job in jobs.values())
    for name, row in before.items():
        assert jobs[name]["times_s"] == row.times_s and jobs[name]["attempts"] == 1
    runs = json.loads(orch("runs", "--format", "json").stdout)
    assert (runs[0]["done"], runs[0]["total"], runs[0]["status"]) == (3000, 3000, "done")


def test_the_scheduler_is_told_what_tasks_should_take():
    """Dask assumes 500 ms for a task of an unknown prefix; orch tells it its prediction."""
    from distributed import Event

    from orchestrator.backends.dask import DaskBackend

    backend = DaskBackend()
    backend.start(cores=1, gpus=0)
    try:
        backend.expect({"orch-demo": 0.0123})
        gate = Event("orch-test-gate", client=backend.client)
        future = backend.client.submit(lambda: Event("orch-test-gate").wait(30), key="orch-demo-0a1b-1", pure=False)

        def duration(dask_scheduler=None):
            task = dask_scheduler.tasks.get("orch-demo-0a1b-1")
            return None if task is None else dask_scheduler._get_prefix_duration(task.prefix)

        deadline = time.monotonic() + 30
        while backend.client.run_on_scheduler(duration) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.client.run_on_scheduler(duration) == pytest.approx(0.0123)
        gate.set()
        future.result(timeout=30)
    finally:
        backend.close()


def test_an_existing_scheduler_keeps_no_group_journals(tmp_path):
    """The groups' journals (scheduler events) are dropped when the run ends, so a long-lived
    scheduler does not keep two events a job."""
    from distributed import Client

    from tests import clusters

    workload = _dots(tmp_path, "tiny-ext", 30)
    with clusters.dask_cluster(tmp_path, workers=1) as (address, _procs):
        clusters.wait_for_workers(address, 1)
        result = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--address", address, "--format", "json",
                      timeout=300)
        with Client(address, timeout=30) as client:
            left = client.run_on_scheduler(
                lambda dask_scheduler: [t for t in dask_scheduler._broker._topics if t.startswith("orch-group/")])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert all(row.detail["group"] for row in _rows(report["run_id"]).values())
    assert left == []
