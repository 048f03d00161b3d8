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
