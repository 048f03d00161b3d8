"""The op catalog: one registry, with aliases; unknown names fail with the valid list.

Each family module defines its ops whole (parameters, cost formulas, kernel, distributed form,
check): adding an op is one class there and its line in that module's `OPS`."""

from __future__ import annotations

from orchestrator.errors import did_you_mean
from orchestrator.ops import linalg, matmul, ml, user, vector
from orchestrator.ops.base import ITEMSIZE, WORKLOAD_DTYPES, Op, Param, Rate, Selection, Split
from orchestrator.ops.tensors import KernelCheckError

_CATALOG: dict[str, Op] = {op.name: op for op in (*vector.OPS, *matmul.OPS, *linalg.OPS, *ml.OPS)}
ALIASES = {"gemm": "matmul", "bmm": "batched_matmul", "inner": "dot", "reduce_sum": "sum"}


def names() -> list[str]:
    return list(_CATALOG)


def get(name: str) -> Op:
    """The op called `name`: the catalog's (or an alias), a `module:attribute`, or an installed
    `orch.ops` entry point (`ops/user.py`); KeyError with a one-line reason otherwise."""
    key = ALIASES.get(name, name)
    if key in _CATALOG:
        return _CATALOG[key]
    if user.is_user_name(name) or name in user.installed():
        return user.resolve(name)
    known = [*_CATALOG, *ALIASES, *user.installed()]
    raise KeyError(f"unknown op '{name}'; {did_you_mean(name, known)} (your own op: package.module:attribute, "
                   f"or a name registered in the '{user.ENTRY_POINT_GROUP}' entry points; `orch ops` lists them)")


__all__ = ["ITEMSIZE", "WORKLOAD_DTYPES", "KernelCheckError", "Op", "Param", "Rate", "Selection", "Split", "get", "names"]
