from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def orch_home(tmp_path, monkeypatch):
    """Every test writes only under a temporary ORCH_HOME."""
    home = tmp_path / "orch-home"
    monkeypatch.setenv("ORCH_HOME", str(home))
    return home
