"""Inputs made the way orch asks: seeded by its CPU generator, and shapes only on `meta`."""

from __future__ import annotations

import torch


def randn(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    if device.type == "meta":  # orch measures the op's footprint here: no memory, no values
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().to("cpu", torch.float64), want.detach().to("cpu", torch.float64)
    return float(torch.linalg.vector_norm(got - want) / (torch.linalg.vector_norm(want) or 1.0))
