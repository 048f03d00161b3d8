"""A user's op (`orchestrator/ops/user.py`) as a kernel: its own `make_inputs`, `run` and, where
it has one, `check`, called the way the harness calls the catalog's kernels."""

from __future__ import annotations

from typing import Any

import torch

from orchestrator.kernels.base import Kernel, Tensors, require


class UserKernel(Kernel):
    def __init__(self, name: str, obj: Any) -> None:
        self.op, self.obj = name, obj  # type: ignore[misc]

    def make_inputs(self, p: dict[str, Any], dtype: torch.dtype, gen: torch.Generator, device: torch.device) -> Tensors:
        made = self.obj.make_inputs(dict(p), dtype, device, gen)
        # a list travels as a tuple (what the harness moves between devices) and is handed back as a list
        return {"inputs": tuple(made) if isinstance(made, list) else made, "as_list": isinstance(made, list)}

    @staticmethod
    def _inputs(x: Tensors) -> Any:
        return list(x["inputs"]) if x["as_list"] else x["inputs"]

    def run(self, x: Tensors, p: dict[str, Any]) -> Any:
        return self.obj.run(self._inputs(x), dict(p))

    def check(self, x: Tensors, result: Any, p: dict[str, Any], dtype: str) -> float | None:
        """The op's own relative error, held to the dtype's tolerance; None where it has no check."""
        if not callable(getattr(self.obj, "check", None)):
            return None
        return require(float(self.obj.check(self._inputs(x), result, dict(p), dtype)), dtype, self.op)


def user_kernel(name: str) -> UserKernel:
    from orchestrator.ops.user import resolve

    op = resolve(name)
    return UserKernel(op.name, op.obj)
