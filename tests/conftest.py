from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def orch_home(tmp_path, monkeypatch):
    """Every test writes only under a temporary ORCH_HOME."""
    home = tmp_path / "orch-home"
    monkeypatch.setenv("ORCH_HOME", str(home))
    return home


@pytest.fixture
def tiny_plans(monkeypatch):
    """Microbenchmarks at toy sizes so a whole profile runs in about a second."""
    from orchestrator.hardware import bench_cpu, bench_gpu, bench_ops

    monkeypatch.setattr(bench_cpu.CpuBenchPlan, "for_machine",
                        classmethod(lambda cls, **_: cls((16, 32), 0.005, 4 << 20, 2000)))
    monkeypatch.setattr(bench_gpu.GpuBenchPlan, "create",
                        classmethod(lambda cls, **_: cls((16, 32), 0.005, 4 << 20, 4 << 20)))
    monkeypatch.setattr(bench_ops, "CPU_REFERENCE", {"solve": [{"n": 32, "nrhs": 1}, {"n": 64, "nrhs": 1}],
                                                     "fft": [{"n": 1024}]})


@dataclass
class FirstPlan:
    """`orch plan workloads/demo.yaml` on a fresh ORCH_HOME, which profiles this machine quickly
    first (the README's path), and what it left: the saved quick profile."""
    home: Path
    result: subprocess.CompletedProcess
    elapsed_s: float
    profile: Path


@pytest.fixture(scope="session")
def first_plan(tmp_path_factory) -> FirstPlan:
    """Run once per test session: a quick profile takes about a minute here, so the tests of
    plan's first profile, of the quick profile's figures, and every test that needs this
    machine's profile share one."""
    folder = tmp_path_factory.mktemp("profile")
    home = folder / "home"
    env = {**os.environ, "ORCH_HOME": str(home), "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "workloads/demo.yaml", "--format", "json"],
                            capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parent.parent)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    saved = sorted((home / "profiles").glob("*.yaml"))
    assert len(saved) == 1, (saved, result.stderr)
    path = folder / "this-machine.yaml"
    shutil.copyfile(saved[0], path)
    return FirstPlan(home, result, elapsed, path)


@pytest.fixture(scope="session")
def measured_profile(first_plan) -> Path:
    """This machine's quick profile, measured once per test session."""
    return first_plan.profile


def _cuda() -> bool:
    """A real CUDA GPU that torch can use (never a stand-in)."""
    if os.environ.get("ORCH_FAKE_GPUS"):
        return False
    from orchestrator.hardware.nvml import visible_gpu_count

    if visible_gpu_count() == 0:  # NVML first: no driver means no torch import for the answer
        return False
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run where a real GPU is (`pytest -m gpu` on a lent GPU machine) and
    are skipped elsewhere, saying why."""
    marked = [item for item in items if item.get_closest_marker("gpu")]
    if marked and not _cuda():
        skip = pytest.mark.skip(reason="needs a real NVIDIA GPU (none here: NVML or CUDA sees none)")
        for item in marked:
            item.add_marker(skip)
