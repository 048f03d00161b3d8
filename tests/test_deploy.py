"""deploy/: every YAML parses, every shell script passes `bash -n`, every Python file compiles,
and the recipes the docs promise are there with the pieces that make them work."""

from __future__ import annotations

import py_compile
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
YAMLS = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
SCRIPTS = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".sh", ".sbatch"))


def _documents(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path):
    assert _documents(path)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_script_syntax(path):
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.py")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_python_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)


def test_the_promised_recipes_are_there():
    compose = _documents(DEPLOY / "compose/compose.yaml")[0]
    assert {"scheduler", "worker", "orch"} <= set(compose["services"])
    assert compose["services"]["scheduler"]["ports"] == ["127.0.0.1:8786:8786", "127.0.0.1:8787:8787"]
    kinds = {doc["kind"] for p in (DEPLOY / "kubernetes").glob("*.yaml") for doc in _documents(p) if "kind" in doc}
    assert {"DaskCluster", "DaskWorkerGroup", "RayCluster", "Job"} <= kinds
    values = _documents(DEPLOY / "kubernetes/dask-helm-values.yaml")[0]
    assert values["additional_worker_groups"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    ray = _documents(DEPLOY / "kubernetes/raycluster.yaml")[0]
    gpu_group = next(g for g in ray["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu")
    # GPU pods of four GPUs, each a Ray GPU (a gpu:4 gang packs on one), and their Dask twin: one
    # worker per GPU by dask-cuda, each declaring gpu=1
    assert gpu_group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert gpu_group["rayStartParams"]["num-gpus"] == "4"
    group = next(doc for doc in _documents(DEPLOY / "kubernetes/daskcluster.yaml") if doc.get("kind") == "DaskWorkerGroup")
    args = group["spec"]["worker"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["dask", "cuda", "worker"] and "gpu=1" in args
    dask_sbatch = (DEPLOY / "slurm/orch-dask.sbatch").read_text()
    assert "#SBATCH --nodes" in dask_sbatch and "dask scheduler" in dask_sbatch and "dask worker" in dask_sbatch
    assert 'dask cuda worker' in dask_sbatch and '--resources "gpu=1"' in dask_sbatch
    assert 'orch run "$WORKLOAD" --address "$ADDRESS"' in dask_sbatch
    assert "start --head" in (DEPLOY / "slurm/orch-ray.sbatch").read_text()
    assert "SLURMCluster" in (DEPLOY / "slurm/jobqueue.py").read_text()
    for folder in ("compose", "kubernetes", "slurm"):
        assert (DEPLOY / folder / "README.md").stat().st_size > 500
