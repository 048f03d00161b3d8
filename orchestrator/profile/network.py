"""The network between a cluster's nodes, measured through Dask (`orch profile --address`) and
kept per scheduler address in `$ORCH_HOME/networks/`. Without a measurement, planning for a
running cluster assumes DEFAULT (and says so)."""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator import paths
from orchestrator.profile.model import Network

DEFAULT = Network(bandwidth=1.25e9, latency_s=5e-5)  # 10 Gb/s Ethernet, 50 µs (an assumption)
SMALL, LARGE = 1 << 10, 64 << 20
ROUNDS = 5


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


def _payload(size: int) -> bytes:
    return os.urandom(size)


def _touch(data: bytes) -> int:
    return len(data)


def measure(client: Any, hosts: dict[str, list[str]]) -> dict[str, Any]:
    """Worker-to-worker transfers between the first two hosts: a 1 KiB and a 64 MiB object made on
    one worker and consumed on the other, timed from the client against the same consumer run
    where the data already is; latency from the small one, bandwidth from the difference."""
    if len(hosts) < 2:
        raise ValueError(f"needs workers on two hosts; the cluster has {len(hosts)}")
    (host_a, [a, *_]), (host_b, [b, *_]) = list(hosts.items())[:2]

    def timed(size: int, consumer: str) -> float:
        samples = []
        for _ in range(ROUNDS):
            data = client.submit(_payload, size, workers=[a], allow_other_workers=False, pure=False)
            data.result()
            started = time.perf_counter()
            client.submit(_touch, data, workers=[consumer], allow_other_workers=False, pure=False).result()
            samples.append(time.perf_counter() - started)
            client.cancel(data)
        return statistics.median(samples)

    local_small, local_large = timed(SMALL, a), timed(LARGE, a)
    remote_small, remote_large = timed(SMALL, b), timed(LARGE, b)
    latency = max(remote_small - local_small, 1e-6)
    transfer = max((remote_large - local_large) - latency, 1e-6)
    return {"address": None, "between": [host_a, host_b], "bandwidth": LARGE / transfer, "latency_s": latency,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "method": "64 MiB and 1 KiB Dask worker-to-worker transfers, median of 5, minus the same task run locally"}
