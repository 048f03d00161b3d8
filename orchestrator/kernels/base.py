"""What every kernel is: synthetic inputs made with the job's seed, one execution on one device
(or split over several), and a check of the result so a fast wrong kernel fails.

Kernels are PyTorch on every device (CPU and CUDA), so one code path is measured everywhere;
`python_dot` is the plain interpreter loop.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import torch

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
                "float64": torch.float64}
# Relative error allowed by the checks, by dtype (half precisions keep ~3 significant digits).
TOLERANCE = {"float16": 5e-2, "bfloat16": 1e-1, "float32": 1e-3, "float64": 1e-9}

Tensors = dict[str, Any]


class KernelCheckError(AssertionError):
    """The kernel ran but its result is wrong."""


class Kernel(abc.ABC):
    """One op's implementation. `run` is what the timer measures."""

    op: ClassVar[str]
    splits: ClassVar[bool] = False  # implements run_split over several devices
    # inputs made only for the check (axpy's initial y): never moved to the device, never timed
    check_only: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def make_inputs(self, p: dict[str, Any], dtype: torch.dtype, gen: torch.Generator, device: torch.device) -> Tensors:
        """Synthetic inputs, seeded, on `device` (not timed)."""

    @abc.abstractmethod
    def run(self, x: Tensors, p: dict[str, Any]) -> Any:
        """One execution on the device the inputs are on; returns the result."""

    @abc.abstractmethod
    def check(self, x: Tensors, result: Any, p: dict[str, Any], dtype: str) -> float:
        """Relative error of `result`; raise KernelCheckError when it is above tolerance."""

    def run_split(self, x: Tensors, p: dict[str, Any], devices: list[torch.device], data_on_host: bool) -> Any:
        raise NotImplementedError(f"{self.op} does not split across devices")

    # A gang (kernels/gang.py): the inputs each rank keeps a slice of, along their first
    # dimension, and the parameter that slice divides. () = the op has no distributed form.
    gang_split: ClassVar[tuple[str, ...]] = ()
    gang_size: ClassVar[str] = ""

    def run_rank(self, x: Tensors, p: dict[str, Any], comm: Any) -> Any:
        """One execution of the op's distributed form on this rank's shard (`p` sized to it);
        `comm` (kernels/gang.Comm) holds the collectives. Default: the shard alone, no exchange."""
        return self.run(x, p)

    def check_rank(self, x: Tensors, result: Any, p: dict[str, Any], dtype: str, comm: Any) -> float:
        """This rank's part of the result checked against its shard (float64)."""
        return self.check(x, result, p, dtype)


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got64, want64 = got.detach().to("cpu", torch.float64), want.detach().to("cpu", torch.float64)
    scale = float(torch.linalg.vector_norm(want64)) or 1.0
    return float(torch.linalg.vector_norm(got64 - want64)) / scale


def require(error: float, dtype: str, what: str, factor: float = 1.0) -> float:
    if not error <= TOLERANCE[dtype] * factor:  # also catches NaN
        raise KernelCheckError(f"{what}: relative error {error:.3g} above {TOLERANCE[dtype] * factor:.3g}")
    return error


def spread_indices(n: int, count: int) -> torch.Tensor:
    """`count` indices spread evenly over 0..n-1, in integer arithmetic (a float32 linspace
    rounds past 2^24 and can step outside the tensor)."""
    count = max(1, min(n, count))
    if count == 1:
        return torch.zeros(1, dtype=torch.long)
    return torch.arange(count, dtype=torch.long) * (n - 1) // (count - 1)


FLOAT16_MAX = 65504.0  # the largest finite float16 (IEEE 754 binary16)


def sum_safe_scale(dtype: torch.dtype, terms: int, per_term: float = 1.0) -> float:
    """A power of two (exact in every float format) that keeps a sum of `terms` non-negative
    values of about `per_term` each near 2^10 in float16, whose range ends at 65504: 1M
    uniform [0, 1) values sum to 500,000 there, which is inf. Other dtypes: 1."""
    if dtype != torch.float16:
        return 1.0
    expected = terms * per_term
    return 2.0 ** -max(0, math.ceil(math.log2(max(expected, 1.0))) - 10)


def uniform(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator, device: torch.device,
            scale: float = 1.0) -> torch.Tensor:
    """Uniform [0, scale) made on the CPU generator (reproducible anywhere), then moved."""
    values = torch.rand(shape, generator=gen, dtype=torch.float32)
    if scale != 1.0:
        values.mul_(scale)
    return values.to(device=device, dtype=dtype)


def normal(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def to_device(x: Any, device: torch.device) -> Any:
    """Move a tensor, or a dict/tuple/list of tensors, to `device` (a no-op where it is)."""
    if isinstance(x, torch.Tensor):
        return x if x.device == device else x.to(device)  # .to() costs ~1 us even where it stays
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(to_device(v, device) for v in x)
    return x  # lists (python_dot's inputs), floats
