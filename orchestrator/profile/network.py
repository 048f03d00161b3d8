"""The network between a cluster's nodes, measured as a gang's collectives cross it (`orch profile
--address`) and kept per scheduler address in `$ORCH_HOME/networks/`. Without a measurement, planning for a
running cluster assumes DEFAULT (and says so)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator import paths
from orchestrator.profile.model import Network
from orchestrator.units import utc_now

DEFAULT = Network(bandwidth=1.25e9, latency_s=5e-5)  # 10 Gb/s Ethernet, 50 µs (an assumption)


def _path(address: str) -> Path:
    folder = paths.orch_home() / "networks"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", address) + ".yaml")


def load(address: str) -> Network | None:
    from orchestrator.errors import ProfileError
    from orchestrator.safe_yaml import load_file

    path = _path(address)
    if not path.exists():
        return None
    data = load_file(path, ProfileError)
    return Network(bandwidth=data["bandwidth"], latency_s=data["latency_s"])


def save(address: str, measured: dict[str, Any]) -> Path:
    return paths.write_atomic(_path(address), yaml.safe_dump(measured, sort_keys=False))


def measured(link: dict[str, float], between: list[str]) -> dict[str, Any]:
    """What is saved of a link measured by a two-rank gang (backends/gang.py:measure_link)."""
    return {"address": None, "between": between, "bandwidth": link["bandwidth"], "latency_s": link["latency_s"],
            "measured": utc_now(),
            "method": "torch.distributed (gloo) all-reduces of 4 bytes (median of 50) and 64 MiB (median of 5) "
                      "between a worker on each of two hosts, read through the ring all-reduce's cost"}
