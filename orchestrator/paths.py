"""Where orch keeps its files: `ORCH_HOME` (default `~/.orch`) and the repo's bundled `profiles/`."""

from __future__ import annotations

import os
from pathlib import Path


def orch_home() -> Path:
    """The user's store; created private to the user (0700) on first use."""
    home = Path(os.environ.get("ORCH_HOME") or Path.home() / ".orch").expanduser()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


def saved_profiles_dir() -> Path:
    path = orch_home() / "profiles"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def bundled_profiles_dir() -> Path:
    """The repo's `profiles/` (override with `ORCH_BUNDLED_PROFILES`)."""
    override = os.environ.get("ORCH_BUNDLED_PROFILES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "profiles"
