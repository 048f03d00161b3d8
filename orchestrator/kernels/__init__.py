"""Kernels by op name: the catalog (orchestrator.ops) says what an op costs, these run it."""

from __future__ import annotations

from orchestrator.kernels import linalg, ml, vector
from orchestrator.kernels.base import Kernel, KernelCheckError

KERNELS: dict[str, Kernel] = {k.op: k for k in (*vector.KERNELS, *linalg.KERNELS, *ml.KERNELS)}

__all__ = ["KERNELS", "Kernel", "KernelCheckError"]
