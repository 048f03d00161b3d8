"""Multi-node placements on a real Dask cluster whose workers sit on two loopback hosts
(127.0.0.2 and 127.0.0.3, the scheduler on 127.0.0.1): discovered by `orch plan --address`,
the network measured by `orch profile --address`, and `orch run --placement cpu@2` executing
each job on both workers."""

from __future__ import annotations

import json

import pytest

from tests import clusters
from tests.cli import orch

WORKLOAD = ("version: 1\nname: multi-node\njobs:\n"
            "  - {name: big-matmul, op: matmul, m: 2048, n: 2048, k: 2048}\n"
            "  - {name: big-kmeans, op: kmeans, samples: 400K, features: 32, clusters: 16}\n"
            "  - {name: training, op: train_mlp, samples: 40K, features: 32, hidden: [64], classes: 4}\n"
            "  - {name: fft, op: fft, n: 1M}\n")


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-hosts")
    with clusters.dask_cluster(folder, workers=2, hosts=("127.0.0.2", "127.0.0.3")) as (address, procs):
        clusters.wait_for_workers(address, 2)
        yield address, folder


def test_plan_address_offers_multi_node_placements(two_hosts, tmp_path, measured_profile):
    address, _ = two_hosts
    workload = tmp_path / "w.yaml"
    workload.write_text(WORKLOAD)
    result = orch("plan", str(workload), "--address", address, "--profile", str(measured_profile), "-f", "json")
    assert result.returncode == 0, result.stderr
    jobs = {job["name"]: job for job in json.loads(result.stdout)["jobs"]}
    for name in ("big-matmul", "big-kmeans"):
        offered = {c["placement"]: c for c in jobs[name]["candidates"]}
        assert offered["cpu@2"]["feasible"], offered
    fft = {c["placement"]: c for c in jobs["fft"]["candidates"]}
    assert not fft["cpu@2"]["feasible"] and "all-to-all" in fft["cpu@2"]["note"]  # stays on one node, says why
    assert "2 worker(s) on 2 host(s) (127.0.0.2, 127.0.0.3)" in result.stderr
    assert "not measured" in result.stderr  # no `orch profile --address` yet: an assumed network, said so


def test_a_cluster_description_network_is_used(two_hosts, tmp_path):
    address, _ = two_hosts
    workload = tmp_path / "w.yaml"
    workload.write_text(WORKLOAD)
    result = orch("plan", str(workload), "--address", address, "--profile", "cpu-c7i-8xlarge")
    assert result.returncode == 0 and "not measured" not in result.stderr  # the profile carries a network


def test_profile_address_measures_the_network_and_plan_uses_it(two_hosts, tmp_path, measured_profile):
    address, _ = two_hosts
    measured = orch("profile", "--address", address, "-f", "json")
    assert measured.returncode == 0, measured.stderr
    data = json.loads(measured.stdout)
    assert set(data["hosts"]) == {"127.0.0.2", "127.0.0.3"}
    assert data["network"]["bandwidth"] > 1e7 and 0 < data["network"]["latency_s"] < 1.0
    workload = tmp_path / "w.yaml"
    workload.write_text(WORKLOAD)
    planned = orch("plan", str(workload), "--address", address, "--profile", str(measured_profile))
    assert planned.returncode == 0 and "not measured" not in planned.stderr


def test_run_cpu_at_2_executes_each_job_on_both_workers(two_hosts, tmp_path):
    address, _ = two_hosts
    workload = tmp_path / "w.yaml"
    workload.write_text(WORKLOAD.rsplit("  - {name: fft", 1)[0])
    every = tmp_path / "every.yaml"  # every other op that splits, small
    every.write_text("version: 1\nname: splits\njobs:\n  - {name: d, op: dot, n: 1M}\n  - {name: s, op: sum, n: 1M}\n"
                     "  - {name: a, op: axpy, n: 1M}\n  - {name: b, op: batched_matmul, batch: 8, m: 64, n: 64, k: 64}\n")
    small = orch("run", str(every), "--address", address, "--profile", "cpu-c7i-8xlarge", "--placement", "cpu@2",
                 "-f", "json", timeout=600)
    assert small.returncode == 0, small.stderr
    assert all(len(job["workers"]) == 2 for job in json.loads(small.stdout)["jobs"])
    result = orch("run", str(workload), "--address", address, "--profile", "cpu-c7i-8xlarge", "--placement", "cpu@2",
                  "-f", "json", timeout=600)
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["jobs"]
    assert [job["status"] for job in jobs] == ["ok", "ok", "ok"]  # matmul, kmeans, data-parallel training
    for job in jobs:
        assert job["placement"] == "cpu@2" and job["measured_s"] > 0
        assert sorted(w.split("//")[1].split(":")[0] for w in job["workers"]) == ["127.0.0.2", "127.0.0.3"]


def test_multi_node_placement_without_such_a_cluster_is_exit_3(tmp_path):
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: w\njobs:\n  - {name: m, op: matmul, m: 64, n: 64, k: 64}\n")
    for backend in ("dask", "ray"):  # an embedded cluster is one node: refused before it starts
        refused = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--placement", "cpu@2", "--backend", backend)
        assert refused.returncode == 3 and "needs workers on 2 hosts" in refused.stderr


def test_ray_cpu_at_2_runs_on_two_ray_nodes(tmp_path):
    """The Ray equivalent: a Ray cluster of two nodes on this machine (ray.cluster_utils), each
    job pinned per node (NodeAffinitySchedulingStrategy); training rendezvous on the first."""
    pytest.importorskip("ray")
    import os

    from ray.cluster_utils import Cluster

    auth_mode = os.environ.get("RAY_AUTH_MODE")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        workload = tmp_path / "w.yaml"
        workload.write_text("version: 1\nname: ray-nodes\njobs:\n  - {name: m, op: matmul, m: 512, n: 512, k: 512}\n"
                            "  - {name: k, op: kmeans, samples: 50K, features: 16, clusters: 8}\n"
                            "  - {name: t, op: train_linear, samples: 20K, features: 16}\n")
        result = orch("run", str(workload), "--backend", "ray", "--address", cluster.address, "--placement", "cpu@2",
                      "--profile", "cpu-c7i-8xlarge", "-f", "json", timeout=600)
    finally:
        cluster.shutdown()
        if auth_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["jobs"]
    assert [job["status"] for job in jobs] == ["ok"] * 3
    for job in jobs:
        assert len(set(job["workers"])) == 2 and all(w.startswith("ray://") for w in job["workers"])
