"""Vector ops: memory-bound on every device, plus the plain-Python baseline."""

from __future__ import annotations

import math
from typing import Any

from orchestrator.ops.base import FLOAT_ONLY, Kernel, Op, Param, Split


class Dot(Op):
    name = "dot"
    summary = "inner product of two vectors"
    params = {"n": Param()}
    kernel = Kernel.STREAM
    split = Split.SHARDS_REDUCE

    def flops(self, p: dict[str, Any]) -> float:
        return 2.0 * p["n"]

    def input_elements(self, p: dict[str, Any]) -> float:
        return 2.0 * p["n"]

    def output_elements(self, p: dict[str, Any]) -> float:
        return 1.0


class PythonDot(Dot):
    name = "python_dot"
    summary = "the same inner product as a plain Python for-loop"
    kernel = Kernel.PYTHON
    split = Split.NONE
    dtypes = FLOAT_ONLY

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        # each element a Python float (a 24-byte object behind an 8-byte list pointer), made
        # from a float64 tensor, with tolist's transient: 96 bytes an element measured (peak RSS
        # at 2M and 8M elements), where 8-byte elements alone said 16
        return 2.0 * p["n"] * 48
    not_supported = {
        "gpu": "a plain Python for-loop runs in the interpreter, on the CPU only",
        "multi_gpu": "a plain Python for-loop runs in the interpreter, on the CPU only",
        "multi_node": "the baseline loop is one interpreter on one core",
    }


class Axpy(Op):
    name = "axpy"
    summary = "y = a*x + y"
    params = {"n": Param()}
    kernel = Kernel.STREAM
    split = Split.ELEMENTWISE

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


class Sum(Op):
    name = "sum"
    summary = "reduction of a vector"
    params = {"n": Param()}
    kernel = Kernel.STREAM
    split = Split.SHARDS_REDUCE

    def flops(self, p: dict[str, Any]) -> float:
        return float(p["n"])

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"])

    def output_elements(self, p: dict[str, Any]) -> float:
        return 1.0


class Fft(Op):
    name = "fft"
    summary = "1-D FFT of a real vector"
    params = {"n": Param()}
    kernel = Kernel.FFT
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


OPS = [Dot(), PythonDot(), Axpy(), Sum(), Fft()]
