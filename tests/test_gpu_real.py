"""The real GPU paths, on a machine with an NVIDIA GPU (`pytest -m gpu`; skipped elsewhere):
NVML discovery, a gang of world size 1 over NCCL (matmul, k-means, DDP training), and the
embedded Dask cluster's one worker per GPU."""

from __future__ import annotations

import json

import pytest

from tests.cli import orch

pytestmark = pytest.mark.gpu


def test_nvml_discovers_the_gpus_cuda_sees():
    import torch

    from orchestrator.hardware.profiler import profile_machine

    found = profile_machine(benchmark=False)
    assert len(found.gpus) == torch.cuda.device_count() >= 1
    assert all(gpu.available and gpu.memory_total_bytes and not gpu.stand_in for gpu in found.gpus)


@pytest.mark.parametrize("op, params", [
    ("matmul", {"m": 2048, "n": 2048, "k": 2048}),
    ("kmeans", {"samples": 200_000, "features": 32, "clusters": 16, "iterations": 5}),
    ("train_mlp", {"samples": 50_000, "features": 64, "hidden": [256], "classes": 8, "epochs": 1, "batch_size": 512}),
])
def test_a_gang_of_one_over_nccl_runs_and_checks(op, params):
    import torch.distributed as dist

    from orchestrator.backends.worker import free_port
    from orchestrator.execute.gang import rank_main

    from orchestrator.execute.task import Task
    from orchestrator.placement import Placement

    task = Task(op, op, params, placement=Placement("gpu", 1), data="device", repeats=3, warmup=1)
    result = rank_main(task, 0, 1, f"tcp://127.0.0.1:{free_port('127.0.0.1')}")
    assert result["device"] == "cuda:0" and len(result["times_s"]) == 3 and all(t > 0 for t in result["times_s"])
    assert not dist.is_initialized()  # torn down


def test_embedded_dask_has_one_worker_per_gpu(tmp_path):
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: gpu\njobs:\n  - {name: mm, op: matmul, m: 4096, n: 4096, k: 4096}\n"
                        "  - {name: mlp, op: train_mlp, samples: 50K, features: 64, hidden: [256], classes: 8}\n")
    result = orch("run", str(workload), "--placement", "gpu", "-f", "json", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "GPU workers:" in result.stderr
    for job in json.loads(result.stdout)["jobs"]:
        assert job["status"] == "ok" and job["placement"] == "gpu", job
