"""What op definitions build their kernels from: synthetic inputs made with the job's seed, the
relative error a check allows by dtype, and PyTorch, loaded on first use.

An op's module holds its cost formulas and its kernel side by side. Planning reads only the
formulas, so `torch` here is imported on first use (`_Torch`): `orch plan` starts without
paying PyTorch's import (1.5 s here), and the first kernel that touches `torch.` on a worker
loads it. A module that imports torch itself (the harness, a user's op) loads it there and then.
"""

from __future__ import annotations

import math
from typing import Any

# Relative error allowed by the checks, by dtype (half precisions keep ~3 significant digits).
TOLERANCE = {"float16": 5e-2, "bfloat16": 1e-1, "float32": 1e-3, "float64": 1e-9}
FLOAT16_MAX = 65504.0  # the largest finite float16 (IEEE 754 binary16)

Tensors = dict[str, Any]


class _Torch:
    """PyTorch, imported on first use. The import is the ordinary one (the interpreter's import
    lock makes it safe from any thread); each attribute is then kept on this object, so later
    reads are plain attribute reads. (The standard library's LazyLoader is not thread-safe
    before Python 3.12: two threads of one orch process executed torch twice, and its C
    extension aborted the process.)"""

    def __getattr__(self, name: str) -> Any:
        import torch as real

        value = getattr(real, name)
        setattr(self, name, value)
        return value


torch: Any = _Torch()


class KernelCheckError(AssertionError):
    """The kernel ran but its result is wrong."""


def rel_error(got: Any, want: Any) -> float:
    got64, want64 = got.detach().to("cpu", torch.float64), want.detach().to("cpu", torch.float64)
    scale = float(torch.linalg.vector_norm(want64)) or 1.0
    return float(torch.linalg.vector_norm(got64 - want64)) / scale


def require(error: float, dtype: str, what: str, factor: float = 1.0) -> float:
    if not error <= TOLERANCE[dtype] * factor:  # also catches NaN
        raise KernelCheckError(f"{what}: relative error {error:.3g} above {TOLERANCE[dtype] * factor:.3g}")
    return error


def spread_indices(n: int, count: int) -> Any:
    """`count` indices spread evenly over 0..n-1, in integer arithmetic (a float32 linspace
    rounds past 2^24 and can step outside the tensor)."""
    count = max(1, min(n, count))
    if count == 1:
        return torch.zeros(1, dtype=torch.long)
    return torch.arange(count, dtype=torch.long) * (n - 1) // (count - 1)


def sum_safe_scale(dtype: Any, terms: int, per_term: float = 1.0) -> float:
    """A power of two (exact in every float format) that keeps a sum of `terms` non-negative
    values of about `per_term` each near 2^10 in float16, whose range ends at 65504: 1M
    uniform [0, 1) values sum to 500,000 there, which is inf. Other dtypes: 1."""
    if dtype != torch.float16:
        return 1.0
    expected = terms * per_term
    return 2.0 ** -max(0, math.ceil(math.log2(max(expected, 1.0))) - 10)


def uniform(shape: tuple[int, ...], dtype: Any, gen: Any, device: Any, scale: float = 1.0) -> Any:
    """Uniform [0, scale) made on the CPU generator (reproducible anywhere), then moved."""
    values = torch.rand(shape, generator=gen, dtype=torch.float32)
    if scale != 1.0:
        values.mul_(scale)
    return values.to(device=device, dtype=dtype)


def normal(shape: tuple[int, ...], dtype: Any, gen: Any, device: Any) -> Any:
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
