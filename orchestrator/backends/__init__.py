"""Backends by name, with aliases; an unknown name fails with the valid list."""

from __future__ import annotations

from orchestrator.backends.base import Backend, Capacity, Outcome
from orchestrator.errors import InputError, did_you_mean

ALIASES = {"distributed": "dask"}


def get(name: str, address: str | None) -> Backend:
    key = ALIASES.get(name, name)
    if key == "dask":
        from orchestrator.backends.dask import DaskBackend

        return DaskBackend(address)
    if key == "ray":
        from orchestrator.backends.ray import RayBackend

        return RayBackend(address)
    raise InputError(f"--backend: unknown backend '{name}'; {did_you_mean(name, ['dask', 'ray', *ALIASES])}")


__all__ = ["Backend", "Capacity", "Outcome", "get"]
