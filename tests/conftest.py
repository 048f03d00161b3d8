from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def orch_home(tmp_path, monkeypatch):
    """Every test writes only under a temporary ORCH_HOME."""
    home = tmp_path / "orch-home"
    monkeypatch.setenv("ORCH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def measured_profile(tmp_path_factory):
    """This machine's quick profile, measured once per test session."""
    import os
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("profile")
    path = folder / "this-machine.yaml"
    env = {**os.environ, "ORCH_HOME": str(folder / "home")}
    subprocess.run([sys.executable, "-m", "orchestrator", "profile", "--quick", "--output", str(path), "--format", "json"],
                   check=True, capture_output=True, env=env, timeout=300)
    return path


def _cuda() -> bool:
    """A real CUDA GPU that torch can use (never a stand-in)."""
    import os

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
