"""The backend interface: start or connect to a cluster, say what it can serve, run tasks.

The base class owns the algorithm (capacity checks, submission, collection); `dask.py` and
`ray.py` say how to talk to their engine.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Capacity:
    """What the cluster can serve: CPU workers (cores each) and the most GPUs one worker has."""

    cpu_workers: int
    cores_per_worker: int
    gpus_per_worker: int = 0
    workers: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """One finished task: its result dict, or the error it raised."""

    key: str
    result: dict[str, Any] | None
    error: str | None = None
    error_type: str | None = None


class Backend(abc.ABC):
    name: ClassVar[str]

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    @property
    def embedded(self) -> bool:
        return self.address is None

    @abc.abstractmethod
    def start(self, *, cores: int, gpus: int) -> Capacity:
        """Start an embedded cluster (bound to 127.0.0.1) or connect to `address`."""

    @abc.abstractmethod
    def submit(self, key: str, task: dict[str, Any], *, cores: int, gpus: int) -> None:
        """Queue one task; `cores`/`gpus` are what it needs on its worker."""

    @abc.abstractmethod
    def results(self) -> Iterator[list[Outcome]]:
        """Finished tasks in completion order, in batches of those that finished together (so
        the caller commits each batch in one transaction), until every task is back."""

    def attempts(self) -> dict[str, int]:
        """Executions per task key where the engine re-ran tasks (after a worker died)."""
        return {}

    @abc.abstractmethod
    def close(self) -> None:
        """Cancel what is left; shut an embedded cluster down, leave an external one running."""


def local_gpu_count() -> int:
    """GPUs this machine can run on (ORCH_FAKE_GPUS stands CPU devices in, for tests)."""
    fake = os.environ.get("ORCH_FAKE_GPUS")
    if fake:
        return int(fake)
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
