"""The op catalog: one registry, with aliases; unknown names fail with the valid list."""

from __future__ import annotations

from orchestrator.errors import did_you_mean
from orchestrator.ops import linalg, ml, vector
from orchestrator.ops.base import ITEMSIZE, WORKLOAD_DTYPES, Kernel, Op, Param, Split

_CATALOG: dict[str, Op] = {op.name: op for op in (*vector.OPS, *linalg.OPS, *ml.OPS)}
ALIASES = {"gemm": "matmul", "bmm": "batched_matmul", "inner": "dot", "reduce_sum": "sum"}


def names() -> list[str]:
    return list(_CATALOG)


def get(name: str) -> Op:
    """The op called `name` (or an alias); KeyError with a did-you-mean otherwise."""
    key = ALIASES.get(name, name)
    if key not in _CATALOG:
        raise KeyError(f"unknown op '{name}'; {did_you_mean(name, [*_CATALOG, *ALIASES])}")
    return _CATALOG[key]


__all__ = ["ITEMSIZE", "WORKLOAD_DTYPES", "Kernel", "Op", "Param", "Split", "get", "names"]
