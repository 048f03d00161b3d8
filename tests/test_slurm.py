"""The SLURM recipes, run for real: a one-node SLURM cluster on this machine
(deploy/slurm/local-cluster.sh: munged, slurmctld and slurmd on loopback), and the sbatch
recipes and the dask-jobqueue path submitted to it. Skipped, with the reason, where the packages
cannot be installed or the daemons cannot start."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.cli import orch

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "slurm" / "local-cluster.sh"
WORKLOAD = """version: 1
name: on-slurm
jobs:
  - {name: dot, op: dot, n: 2M}
  - {name: mm, op: matmul, m: 384, n: 512, k: 256}
  - {name: km, op: kmeans, samples: 30K, features: 8, clusters: 5, iterations: 4}
  - {name: lin, op: train_linear, samples: 4096, features: 32}
"""


def _daemons(state: Path) -> list[psutil.Process]:
    """Processes of this SLURM: its daemons (by their state folder) and the job steps."""
    found = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        line = " ".join(proc.info["cmdline"] or [])
        if str(state) in line or (proc.info["name"] or "").startswith("slurmstepd"):
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root (slurmd runs jobs as their users)")
    state = tmp_path_factory.mktemp("slurm-state")
    env = {**os.environ, "ORCH_SLURM_STATE": str(state)}
    started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, env=env, timeout=600)
    if started.returncode != 0:
        pytest.skip(f"no local SLURM here: {started.stderr.strip().splitlines()[-1:]}")
    conf = started.stdout.strip().split("=", 1)[1]
    again = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and "already running" in again.stderr  # safe to run twice
    yield {"state": state, "conf": conf}
    stopped = subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, env=env, timeout=120)
    assert stopped.returncode == 0
    gone, alive = psutil.wait_procs(_daemons(state), timeout=20)
    assert alive == [], f"left behind: {[p.info['cmdline'] for p in alive]}"


def _env(slurm) -> dict[str, str]:
    """This test's environment (its ORCH_HOME: sbatch exports it to the job) and the SLURM_CONF."""
    return {**os.environ, "ORCH_SLURM_STATE": str(slurm["state"]), "SLURM_CONF": slurm["conf"]}


def _sbatch(slurm, tmp_path: Path, recipe: str, *args: str) -> str:
    env = {**_env(slurm), "ORCH_SLURM_RUN_DIR": str(tmp_path), "ORCH_VENV": str(Path(sys.prefix))}
    # as a user would: the recipe's own defaults (one whole node)
    done = subprocess.run(["sbatch", "--parsable", f"--output={tmp_path}/%j.out",
                           str(ROOT / "deploy" / "slurm" / recipe), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def _wait(slurm, job: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True,
                                env=_env(slurm))
        if not queued.stdout.strip():
            return
        if "PartitionConfig" in queued.stdout:  # it asks for more than the node has: it would wait forever
            subprocess.run(["scancel", job], env=_env(slurm))
            raise AssertionError(f"job {job} can never start: {queued.stdout.strip()}")
        time.sleep(1)
    raise AssertionError(f"job {job} still queued or running after {timeout} s")


def _runs() -> list[dict]:
    return json.loads(orch("runs", "--format", "json").stdout)


def test_the_node_is_idle(slurm):
    shown = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T %c"], capture_output=True, text=True, env=_env(slurm))
    assert shown.returncode == 0 and " idle " in f" {shown.stdout.strip()} "


@pytest.mark.parametrize("recipe", ["orch-dask.sbatch", "orch-ray.sbatch"])
def test_a_recipe_runs_a_workload_to_the_end(slurm, tmp_path, orch_home, recipe):
    if recipe == "orch-ray.sbatch" and shutil.which("ray", path=str(Path(sys.prefix) / "bin")) is None:
        pytest.skip("Ray is not installed in this environment")
    workload = tmp_path / "w.yaml"
    workload.write_text(WORKLOAD)
    job = _sbatch(slurm, tmp_path, recipe, str(workload), "--profile", "cpu-c7i-8xlarge")
    _wait(slurm, job)
    output = (tmp_path / f"{job}.out").read_text()
    runs = _runs()
    assert len(runs) == 1 and runs[0]["status"] == "done" and runs[0]["done"] == runs[0]["total"] == 4, output[-3000:]
    assert (tmp_path / f".orch-slurm-{job}" / "report.html").exists()


def test_jobqueue_runs_a_workload_to_the_end(slurm, tmp_path, orch_home):
    pytest.importorskip("dask_jobqueue")
    workload = tmp_path / "w.yaml"
    workload.write_text(WORKLOAD)
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "slurm" / "jobqueue.py"), str(workload), "--nodes", "1",
                           "--cores", str(min(2, os.cpu_count() or 1)), "--memory", "2GB", "--host", "127.0.0.1", "--log-directory", str(tmp_path),
                           "--", "--profile", "cpu-c7i-8xlarge", "--format", "json"],
                          capture_output=True, text=True, env=_env(slurm), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = json.loads(done.stdout)["jobs"]
    assert [j["status"] for j in jobs] == ["ok"] * 4 and all(j["workers"][0].startswith("tcp://127.0.0.1:") for j in jobs)
    assert _runs()[0]["status"] == "done"


def test_scancel_interrupts_and_a_second_submission_resumes(slurm, tmp_path, orch_home):
    workload = tmp_path / "long.yaml"
    workload.write_text("version: 1\nname: long\njobs:\n" + "".join(
        f"  - {{name: m{i}, op: matmul, m: 1536, n: 1536, k: 1536, repeats: 2}}\n" for i in range(40)))
    first = _sbatch(slurm, tmp_path, "orch-dask.sbatch", str(workload), "--profile", "cpu-c7i-8xlarge")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (_runs() and _runs()[0]["status"] == "running" and _runs()[0]["done"] >= 3):
        time.sleep(0.5)
    subprocess.run(["scancel", first], check=True, env=_env(slurm))
    _wait(slurm, first)
    run = _runs()[0]
    assert run["status"] == "interrupted" and 3 <= run["done"] < 40, run
    with sqlite3.connect(orch_home / "results.db") as db:
        finished = {name: (attempts, times) for name, attempts, times in
                    db.execute("SELECT name, attempts, times_s FROM jobs WHERE run_id = ? AND status = 'ok'", (run["run_id"],))}
    second = _sbatch(slurm, tmp_path, "orch-dask.sbatch", str(workload), "--profile", "cpu-c7i-8xlarge",
                     "--resume", run["run_id"])
    _wait(slurm, second)
    assert _runs()[0] == {**_runs()[0], "run_id": run["run_id"], "status": "done", "done": 40}
    with sqlite3.connect(orch_home / "results.db") as db:
        after = {name: (status, attempts, times) for name, status, attempts, times in
                 db.execute("SELECT name, status, attempts, times_s FROM jobs WHERE run_id = ?", (run["run_id"],))}
    assert {status for status, _, _ in after.values()} == {"ok"}
    for name, (attempts, times) in finished.items():  # never run again
        assert after[name][1:] == (attempts, times)
