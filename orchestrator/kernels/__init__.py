"""Kernels by op name: the catalog (orchestrator.ops) says what an op costs, these run it."""

from __future__ import annotations

from orchestrator.kernels import linalg, ml, vector
from orchestrator.kernels.base import Kernel, KernelCheckError

KERNELS: dict[str, Kernel] = {k.op: k for k in (*vector.KERNELS, *linalg.KERNELS, *ml.KERNELS)}


def get(name: str) -> Kernel:
    """The kernel of op `name`: the catalog's, else the user's own (`kernels/user.py`)."""
    found = KERNELS.get(name)
    if found is None:
        from orchestrator.kernels.user import user_kernel

        found = KERNELS[name] = user_kernel(name)
    return found


__all__ = ["KERNELS", "Kernel", "KernelCheckError", "get"]
