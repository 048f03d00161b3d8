"""Vector ops: memory-bound on every device, plus the plain-Python baseline."""

from __future__ import annotations

import math
from typing import Any

from orchestrator.ops.base import FLOAT_ONLY, Op, Param, Rate, Split
from orchestrator.ops.tensors import (
    KernelCheckError,
    Tensors,
    rel_error,
    require,
    spread_indices,
    sum_safe_scale,
    torch,
    uniform,
)


class Dot(Op):
    name = "dot"
    summary = "inner product of two vectors"
    params = {"n": Param()}
    rate = Rate.STREAM
    split = Split.SHARDS_REDUCE
    gang_split = ("x", "y")
    gang_size = "n"

    def flops(self, p: dict[str, Any]) -> float:
        return 2.0 * p["n"]

    def input_elements(self, p: dict[str, Any]) -> float:
        return 2.0 * p["n"]

    def output_elements(self, p: dict[str, Any]) -> float:
        return 1.0

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


class PythonDot(Dot):
    name = "python_dot"
    summary = "the same inner product as a plain Python for-loop"
    rate = Rate.PYTHON
    split = Split.NONE
    gang_split = ()
    dtypes = FLOAT_ONLY
    not_supported = {
        "gpu": "a plain Python for-loop runs in the interpreter, on the CPU only",
        "multi_gpu": "a plain Python for-loop runs in the interpreter, on the CPU only",
        "multi_node": "the baseline loop is one interpreter on one core",
    }

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        # each element a Python float (a 24-byte object behind an 8-byte list pointer), made
        # from a float64 tensor, with tolist's transient: 96 bytes an element measured (peak RSS
        # at 2M and 8M elements), where 8-byte elements alone said 16
        return 2.0 * p["n"] * 48

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


class Axpy(Op):
    """y = a*x + y in place, as BLAS axpy. On the CPU y keeps growing by a*x with each execution;
    a GPU run with `data: host` updates the device copy, so each execution gives y0 + a*x."""

    name = "axpy"
    summary = "y = a*x + y"
    params = {"n": Param()}
    rate = Rate.STREAM
    split = Split.ELEMENTWISE
    gang_split = ("x", "y", "y0")
    gang_size = "n"
    check_only = frozenset({"y0"})
    alpha = 0.5

    def flops(self, p: dict[str, Any]) -> float:
        return 2.0 * p["n"]

    def input_elements(self, p: dict[str, Any]) -> float:
        return 2.0 * p["n"]

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"])

    def working_set_elements(self, p: dict[str, Any]) -> float:
        return 2.0 * p["n"]  # y is updated in place

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        return 3.0 * p["n"] * itemsize  # x, y and the check's copy of the initial y

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


class Sum(Op):
    name = "sum"
    summary = "reduction of a vector"
    params = {"n": Param()}
    rate = Rate.STREAM
    split = Split.SHARDS_REDUCE
    gang_split = ("x",)
    gang_size = "n"

    def flops(self, p: dict[str, Any]) -> float:
        return float(p["n"])

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"])

    def output_elements(self, p: dict[str, Any]) -> float:
        return 1.0

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"x": uniform((p["n"],), dtype, gen, device, sum_safe_scale(dtype, p["n"], 0.5))}

    def run(self, x: Tensors, p) -> Any:
        return x["x"].sum()

    def run_split(self, x, p, devices, data_on_host) -> Any:
        return sum(part.to(d).sum().to(devices[0]) for part, d in zip(x["x"].tensor_split(len(devices)), devices))

    def run_rank(self, x, p, comm) -> Any:
        return comm.all_reduce(self.run(x, p).reshape(1))

    def check_rank(self, x, result, p, dtype, comm) -> float:
        want = comm.all_reduce(x["x"].double().sum().reshape(1))
        return require(rel_error(result, want), dtype, "sum", 1 + math.log2(comm.total) / 4)

    def check(self, x, result, p, dtype) -> float:
        want = x["x"].double().cpu().sum()
        return require(rel_error(torch.as_tensor(result), want), dtype, "sum", 1 + math.log2(p["n"]) / 4)


class Fft(Op):
    name = "fft"
    summary = "1-D FFT of a real vector"
    params = {"n": Param()}
    rate = Rate.FFT
    dtypes = FLOAT_ONLY
    not_supported = {
        "multi_gpu": "a 1-D FFT needs all-to-all exchanges between passes; orch runs it on one device",
        "multi_node": "a 1-D FFT needs all-to-all exchanges between passes; orch runs it on one device",
    }

    def flops(self, p: dict[str, Any]) -> float:
        n = p["n"]
        return 2.5 * n * math.log2(max(n, 2))  # real-input FFT: half of 5 n log2 n (Cooley-Tukey)

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"])

    def output_elements(self, p: dict[str, Any]) -> float:
        return 2.0 * (p["n"] // 2 + 1)  # n/2+1 complex values

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        # the check's direct DFT holds a complex128 exponential and product of length n at once
        return super().peak_bytes(p, itemsize) + 48.0 * p["n"]

    def traffic_elements(self, p: dict[str, Any]) -> float:
        # Out-of-cache FFTs make about log2(n)/10 passes over the data (radix-2^10 blocking).
        passes = max(1.0, math.log2(max(p["n"], 2)) / 10)
        return passes * (self.input_elements(p) + self.output_elements(p))

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


OPS = [Dot(), PythonDot(), Axpy(), Sum(), Fft()]
