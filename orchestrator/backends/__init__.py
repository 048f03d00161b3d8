"""Backends by name, with aliases; an unknown name fails with the valid list."""

from __future__ import annotations

from typing import Any

from orchestrator.backends.base import Backend, Capacity, Outcome, TLSFiles
from orchestrator.errors import InputError, did_you_mean

ALIASES = {"distributed": "dask"}


def get(name: str, address: str | None, **options: Any) -> Backend:
    """`options`: retries (re-runs after a worker dies), tls (TLSFiles for a tls:// Dask scheduler)."""
    key = ALIASES.get(name, name)
    if key == "dask":
        from orchestrator.backends.dask import DaskBackend

        return DaskBackend(address, **options)
    if key == "ray":
        from orchestrator.backends.ray import RayBackend

        if options.get("tls") is not None:
            raise InputError("--tls-*: TLS files are for a Dask scheduler; Ray's links use its own token "
                             "authentication and TLS settings (RAY_USE_TLS)")
        return RayBackend(address, **options)
    raise InputError(f"--backend: unknown backend '{name}'; {did_you_mean(name, ['dask', 'ray', *ALIASES])}")


__all__ = ["Backend", "Capacity", "Outcome", "TLSFiles", "get"]
