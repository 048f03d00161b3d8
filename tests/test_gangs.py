"""Gangs: a job on several workers at once, joined by torch.distributed (gloo on CPU stand-ins
for GPUs, ORCH_FAKE_GPUS). One worker per stand-in GPU in the embedded Dask cluster; an
existing Dask cluster whose workers sit on two loopback hosts; Ray's placement groups on one
node and across two; a rank's worker killed mid-job."""

from __future__ import annotations

import json
import os
import time

import psutil
import pytest

from orchestrator.hardware import profiler
from orchestrator.profile import store
from tests import clusters
from tests.cli import orch

GANG_JOBS = ("version: 1\nname: gangs\njobs:\n"
             "  - {name: mm, op: matmul, m: 384, n: 256, k: 256, repeats: auto}\n"
             "  - {name: km, op: kmeans, samples: 30K, features: 16, clusters: 8, iterations: 5}\n"
             "  - {name: mlp, op: train_mlp, samples: 8K, features: 16, hidden: [32], classes: 4, batch_size: 256}\n"
             "  - {name: lin, op: train_linear, samples: 8K, features: 16, batch_size: 256}\n")
EVERY_OTHER = ("version: 1\nname: splits\njobs:\n  - {name: d, op: dot, n: 100K}\n  - {name: s, op: sum, n: 100K}\n"
               "  - {name: a, op: axpy, n: 100K}\n  - {name: b, op: batched_matmul, batch: 6, m: 32, n: 32, k: 32}\n")


def _run(workload, *args, env, timeout=400):
    result = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "-f", "json", *args, env=env, timeout=timeout)
    assert result.returncode == 0, f"{result.stderr}\njobs not ok: {_not_ok(result.stdout)}"
    return json.loads(result.stdout), result.stderr


def _not_ok(stdout: str) -> list | str:
    """The jobs of a run's JSON that did not end ok, with their errors and failures (what a
    failed run says about itself), or the output itself where it is not JSON."""
    try:
        jobs = json.loads(stdout)["jobs"]
    except (ValueError, KeyError, TypeError):
        return stdout[-2000:]
    return [{k: job.get(k) for k in ("name", "status", "attempts", "error", "failures")}
            for job in jobs if job.get("status") != "ok"]


def _left_behind(home: str) -> list[int]:
    """Processes still running with this test's ORCH_HOME in their environment."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid != os.getpid() and proc.environ().get("ORCH_HOME") == home:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def test_stand_in_gpus_are_discovered_and_profiled_as_the_cpu():
    from orchestrator.hardware.profiler import profile_machine

    found = profile_machine(benchmark=False, env={"ORCH_FAKE_GPUS": "2"})
    assert [gpu.stand_in for gpu in found.gpus] == [True, True] and "ORCH_FAKE_GPUS=2" in found.system.gpu_discovery_note
    assert found.gpus[0].memory_total_bytes == found.cpu.memory_total_bytes // 2


def test_embedded_gpu2_runs_each_job_as_a_gang_and_survives_a_killed_rank(tmp_path):
    """One run: every op that splits as a gang of two workers; k-means loses a rank mid-job
    (SIGKILL) and is re-run whole; sum's own code fails on one rank and fails the job with
    that cause; nothing hangs and nothing is left running."""
    workload = tmp_path / "w.yaml"
    workload.write_text(GANG_JOBS + EVERY_OTHER.split("jobs:\n", 1)[1])
    env = {"ORCH_FAKE_GPUS": "2", "ORCH_HOME": str(tmp_path / "home"), "ORCH_CRASH_JOBS": "km",
           "ORCH_CRASH_MARKERS": str(tmp_path), "ORCH_FAIL_JOBS": "s", "ORCH_COLLECTIVE_TIMEOUT_S": "30"}
    started = time.monotonic()
    result = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "-f", "json", "--placement", "gpu:2",
                  env=env, timeout=400)
    assert time.monotonic() - started < 240 and result.returncode == 1, result.stderr
    assert "one Dask worker per stand-in GPU (ORCH_FAKE_GPUS=2)" in result.stderr
    jobs = {job["name"]: job for job in json.loads(result.stdout)["jobs"]}
    for name, job in jobs.items():
        assert job["placement"] == "gpu:2" and job["status"] == ("failed" if name == "s" else "ok"), job
        assert name == "s" or len(set(job["workers"])) == 2, job
    assert jobs["km"]["attempts"] == 2 and jobs["km"]["failures"][0]["error_type"] == "WorkerDied"
    assert "InjectedFailure" in jobs["s"]["error"] and jobs["s"]["attempts"] == 1
    assert _left_behind(env["ORCH_HOME"]) == []


def test_a_plan_on_stand_ins_offers_gpu_placements(tmp_path, tiny_plans):
    """A profile measured with ORCH_FAKE_GPUS=2 (toy sizes: a quick one takes a minute here)
    has two stand-in GPUs, and plan places gangs on them."""
    workload = tmp_path / "w.yaml"
    workload.write_text(GANG_JOBS)
    measured = profiler.profile_machine(quick=True, env={"ORCH_FAKE_GPUS": "2"})
    assert [gpu.stand_in for gpu in measured.gpus] == [True, True]
    store.save(measured, tmp_path / "p.yaml")
    plan = orch("plan", str(workload), "--profile", str(tmp_path / "p.yaml"), "--placement", "gpu:2", "-f", "json",
                env={"ORCH_HOME": str(tmp_path / "home")})
    assert plan.returncode == 0, plan.stderr
    assert all(job["placement"] == "gpu:2" for job in json.loads(plan.stdout)["jobs"]), plan.stdout


@pytest.fixture(scope="module")
def four_stand_ins(tmp_path_factory):
    """Two `dask worker`s on 127.0.0.2 and two on 127.0.0.3, each with one stand-in GPU."""
    folder = tmp_path_factory.mktemp("four")
    with clusters.dask_cluster(folder, workers=4, hosts=("127.0.0.2", "127.0.0.3"),
                               env={"ORCH_FAKE_GPUS": "1"}) as (address, procs):
        clusters.wait_for_workers(address, 4)
        yield address


def test_existing_cluster_runs_gpu2_at_2_on_four_workers(four_stand_ins, tmp_path):
    workload = tmp_path / "w.yaml"
    workload.write_text(GANG_JOBS)
    env = {"ORCH_HOME": str(tmp_path / "home")}  # orch's own process has no stand-ins: its workers do
    report, stderr = _run(workload, "--address", four_stand_ins, "--placement", "gpu:2@2", env=env)
    assert "stand-ins" in stderr
    for job in report["jobs"]:
        assert job["status"] == "ok" and job["placement"] == "gpu:2@2", job
        assert len(set(job["workers"])) == 4, job
        hosts = sorted(worker.split("//")[1].split(":")[0] for worker in job["workers"])
        assert hosts == ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"], job


def test_ray_gangs_on_one_node_and_across_two(tmp_path, monkeypatch):
    """Ray: gpu:2 in an embedded ray.init (a STRICT_PACK placement group; k-means loses a rank
    mid-job and is re-run whole), then gpu:2@2 on a two-node cluster (ray.cluster_utils) with
    two stand-in GPUs a node (SPREAD)."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    workload = tmp_path / "w.yaml"
    workload.write_text(GANG_JOBS)
    home = str(tmp_path / "home")
    report, _ = _run(workload, "--backend", "ray", "--placement", "gpu:2",
                     env={"ORCH_FAKE_GPUS": "2", "ORCH_HOME": home, "ORCH_CRASH_JOBS": "km",
                          "ORCH_CRASH_MARKERS": str(tmp_path), "ORCH_COLLECTIVE_TIMEOUT_S": "30"})
    assert all(job["status"] == "ok" and len(set(job["workers"])) == 2 for job in report["jobs"]), report["jobs"]
    killed = next(job for job in report["jobs"] if job["name"] == "km")  # a rank SIGKILLed: re-run whole
    assert killed["attempts"] == 2 and killed["failures"][0]["error_type"] == "WorkerDied", killed
    assert _left_behind(home) == []

    monkeypatch.setenv("ORCH_FAKE_GPUS", "1")  # the nodes' workers inherit it: each rank one stand-in
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 2})
    try:
        cluster.add_node(num_cpus=2, num_gpus=2)
        cluster.wait_for_nodes()
        report, _ = _run(workload, "--backend", "ray", "--address", cluster.address, "--placement", "gpu:2@2",
                         env={"ORCH_HOME": home})
    finally:
        cluster.shutdown()
    for job in report["jobs"]:
        assert job["status"] == "ok" and len(set(job["workers"])) == 4, job

