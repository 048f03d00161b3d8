"""dot, python_dot, axpy, sum, fft."""

from __future__ import annotations

import math
from typing import Any

import torch

from orchestrator.kernels.base import (
    Kernel,
    KernelCheckError,
    Tensors,
    rel_error,
    require,
    spread_indices,
    sum_safe_scale,
    uniform,
)


class Dot(Kernel):
    op = "dot"
    splits = True
    gang_split = ("x", "y")
    gang_size = "n"

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        # each factor gets half the scale's exponent, so every product (mean 1/4) shrinks by it
        scale = 2.0 ** math.floor(math.log2(sum_safe_scale(dtype, p["n"], 0.25)) / 2)
        return {"x": uniform((p["n"],), dtype, gen, device, scale), "y": uniform((p["n"],), dtype, gen, device, scale)}

    def run(self, x: Tensors, p) -> Any:
        return torch.dot(x["x"], x["y"])

    def run_split(self, x, p, devices, data_on_host) -> Any:
        xs, ys = x["x"].tensor_split(len(devices)), x["y"].tensor_split(len(devices))
        parts = [torch.dot(a.to(d), b.to(d)) for a, b, d in zip(xs, ys, devices)]
        return sum(part.to(devices[0]) for part in parts)

    def run_rank(self, x, p, comm) -> Any:
        return comm.all_reduce(self.run(x, p).reshape(1))  # this shard's dot, summed over the ranks

    def check_rank(self, x, result, p, dtype, comm) -> float:
        want = comm.all_reduce(torch.dot(x["x"].double(), x["y"].double()).reshape(1))
        return require(rel_error(result, want), dtype, "dot", 1 + math.log2(comm.total) / 4)

    def check(self, x, result, p, dtype) -> float:
        want = torch.dot(x["x"].double().cpu(), x["y"].double().cpu())
        # half-precision dots accumulate in the input dtype; allow for n's rounding steps
        return require(rel_error(torch.as_tensor(result), want), dtype, "dot", 1 + math.log2(p["n"]) / 4)


class PythonDot(Kernel):
    op = "python_dot"

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        a = torch.rand(p["n"], generator=gen, dtype=torch.float64)
        b = torch.rand(p["n"], generator=gen, dtype=torch.float64)
        return {"x": a.tolist(), "y": b.tolist()}

    def run(self, x: Tensors, p) -> Any:
        total = 0.0
        for a, b in zip(x["x"], x["y"]):
            total += a * b
        return total

    def check(self, x, result, p, dtype) -> float:
        want = math.fsum(a * b for a, b in zip(x["x"], x["y"]))
        error = abs(result - want) / abs(want)
        if not error < 1e-9:
            raise KernelCheckError(f"python_dot: relative error {error:.3g}")
        return error


class Axpy(Kernel):
    """y = a*x + y in place, as BLAS axpy. On the CPU y keeps growing by a*x with each execution;
    a GPU run with `data: host` updates the device copy, so each execution gives y0 + a*x."""

    op = "axpy"
    splits = True
    gang_split = ("x", "y", "y0")
    gang_size = "n"
    alpha = 0.5
    check_only = frozenset({"y0"})

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        y = uniform((p["n"],), dtype, gen, device)
        return {"x": uniform((p["n"],), dtype, gen, device), "y": y, "y0": y.clone()}

    def run(self, x: Tensors, p) -> Any:
        return x["y"].add_(x["x"], alpha=self.alpha)

    def run_split(self, x, p, devices, data_on_host) -> Any:
        parts = [b.to(d).add_(a.to(d), alpha=self.alpha)
                 for a, b, d in zip(x["x"].tensor_split(len(devices)), x["y"].tensor_split(len(devices)), devices)]
        return torch.cat([part.to(devices[0]) for part in parts])

    def check(self, x, result, p, dtype) -> float:
        idx = spread_indices(p["n"], 1000)
        y0, step = x["y0"][idx].cpu().double(), self.alpha * x["x"][idx].cpu().double()  # index first: no n-long copies
        got = result.cpu()[idx]
        times = torch.round((got.double() - y0).sum() / step.sum()).clamp(min=1)  # executions applied
        return require(rel_error(got, y0 + times * step), dtype, "axpy", float(times))


class Sum(Kernel):
    op = "sum"
    splits = True
    gang_split = ("x",)
    gang_size = "n"

    def run_rank(self, x, p, comm) -> Any:
        return comm.all_reduce(self.run(x, p).reshape(1))

    def check_rank(self, x, result, p, dtype, comm) -> float:
        want = comm.all_reduce(x["x"].double().sum().reshape(1))
        return require(rel_error(result, want), dtype, "sum", 1 + math.log2(comm.total) / 4)

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"x": uniform((p["n"],), dtype, gen, device, sum_safe_scale(dtype, p["n"], 0.5))}

    def run(self, x: Tensors, p) -> Any:
        return x["x"].sum()

    def run_split(self, x, p, devices, data_on_host) -> Any:
        return sum(part.to(d).sum().to(devices[0]) for part, d in zip(x["x"].tensor_split(len(devices)), devices))

    def check(self, x, result, p, dtype) -> float:
        want = x["x"].double().cpu().sum()
        return require(rel_error(torch.as_tensor(result), want), dtype, "sum", 1 + math.log2(p["n"]) / 4)


class Fft(Kernel):
    op = "fft"

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"x": uniform((p["n"],), dtype, gen, device)}

    def run(self, x: Tensors, p) -> Any:
        return torch.fft.rfft(x["x"])

    def check(self, x, result, p, dtype) -> float:
        # a few bins against the direct DFT sum in float64
        signal = x["x"].double().cpu()
        n = p["n"]
        positions = torch.arange(n, dtype=torch.float64)
        bins = sorted({0, 1, n // 3, n // 2})
        want = torch.stack([torch.sum(signal * torch.exp(-2j * math.pi * k * positions / n)) for k in bins])
        got = result.cpu().to(torch.complex128)[bins]
        error = float(torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want))
        return require(error, dtype, "fft", 1 + math.log2(max(n, 2)))


KERNELS = [Dot(), PythonDot(), Axpy(), Sum(), Fft()]
