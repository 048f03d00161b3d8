"""Matrix products: one GEMM, or a batch of them, at the measured GEMM curve."""

from __future__ import annotations

import math
from typing import Any

from orchestrator.ops.base import Op, Param, Rate, Split
from orchestrator.ops.tensors import Tensors, rel_error, require, spread_indices, sum_safe_scale, torch, uniform

CHECK_BLOCK_ELEMENTS = 1 << 24  # float64 elements of B a matmul check holds at once (128 MiB)


def _factor_scale(dtype: Any, k: int) -> float:
    """Each factor's scale, so that an inner product of length k (k/4 on average for uniform
    [0, 1) entries) stays inside float16's range: half of the sum's exponent each."""
    return 2.0 ** math.floor(math.log2(sum_safe_scale(dtype, k, 0.25)) / 2)


class Matmul(Op):
    name = "matmul"
    summary = "C = A*B, A m x k, B k x n"
    params = {"m": Param(), "n": Param(), "k": Param()}
    rate = Rate.GEMM
    split = Split.ROW_BLOCKS
    gang_split = ("a",)
    gang_size = "m"

    def flops(self, p: dict[str, Any]) -> float:
        return 2.0 * p["m"] * p["n"] * p["k"]

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["m"] * p["k"] + p["k"] * p["n"])

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["m"] * p["n"])

    def replicated_elements(self, p: dict[str, Any]) -> float:
        return float(p["k"] * p["n"])

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        # the check holds a block of B in float64, 2^24 elements at most
        return self.working_set_elements(p) * itemsize + 8.0 * min(p["k"] * p["n"], CHECK_BLOCK_ELEMENTS)

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        scale = _factor_scale(dtype, p["k"])
        return {"a": uniform((p["m"], p["k"]), dtype, gen, device, scale),
                "b": uniform((p["k"], p["n"]), dtype, gen, device, scale)}

    def run(self, x: Tensors, p) -> Any:
        return x["a"] @ x["b"]

    def run_split(self, x, p, devices, data_on_host) -> Any:
        """Row blocks of A, B replicated, C gathered on the first device."""
        blocks = x["a"].tensor_split(len(devices))
        parts = [block.to(d) @ x["b"].to(d) for block, d in zip(blocks, devices)]
        return torch.cat([part.to(devices[0]) for part in parts])

    def run_rank(self, x, p, comm) -> Any:
        """This rank's row block of C, then every block on every rank (all-gather)."""
        return comm.gather_rows(self.run(x, p))

    def check_rank(self, x, result, p, dtype, comm) -> float:
        return self.check(x, result[comm.start:comm.start + comm.count], p, dtype)

    def check(self, x, result, p, dtype) -> float:
        """Eight rows against float64, B taken a block of columns at a time (a float64 copy of
        a 100K x 100K B would be 80 GB)."""
        rows = spread_indices(p["m"], 8)
        a = x["a"].cpu()[rows].double()
        step = max(1, CHECK_BLOCK_ELEMENTS // p["k"])
        want = torch.cat([a @ x["b"][:, j:j + step].cpu().double() for j in range(0, p["n"], step)], dim=1)
        return require(rel_error(result.cpu()[rows], want), dtype, "matmul")


class BatchedMatmul(Matmul):
    name = "batched_matmul"
    summary = "a batch of independent matmuls"
    params = {"batch": Param(), "m": Param(), "n": Param(), "k": Param()}
    gang_split = ("a", "b")
    gang_size = "batch"

    def flops(self, p: dict[str, Any]) -> float:
        return p["batch"] * super().flops(p)

    def input_elements(self, p: dict[str, Any]) -> float:
        return p["batch"] * super().input_elements(p)

    def output_elements(self, p: dict[str, Any]) -> float:
        return p["batch"] * super().output_elements(p)

    def replicated_elements(self, p: dict[str, Any]) -> float:
        return 0.0  # split by batch: nothing is shared

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        return self.working_set_elements(p) * itemsize  # the check reads four of the matrices

    def calls(self, p: dict[str, Any], device: str) -> int:
        """One: the batch runs as one GEMM of its whole work. A GPU's batched kernel fills the
        device with it; on a CPU torch hands MKL the batch at once, which spreads the matrices
        over the cores. Priced matrix by matrix (the curve at 64^3 where 32 of them ran), the
        2-core VM's references ran 1.5-2.6x faster than the model, and held-out batches between
        them (8 x 150^3, 16 x 128^3) were predicted at 0.67-0.88x their time (0.80-1.01x now)."""
        return 1

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        scale = _factor_scale(dtype, p["k"])
        return {"a": uniform((p["batch"], p["m"], p["k"]), dtype, gen, device, scale),
                "b": uniform((p["batch"], p["k"], p["n"]), dtype, gen, device, scale)}

    def run(self, x: Tensors, p) -> Any:
        return torch.bmm(x["a"], x["b"])

    def run_split(self, x, p, devices, data_on_host) -> Any:
        """Split by batch: nothing is shared."""
        pairs = zip(x["a"].tensor_split(len(devices)), x["b"].tensor_split(len(devices)), devices)
        parts = [torch.bmm(a.to(d), b.to(d)) for a, b, d in pairs]
        return torch.cat([part.to(devices[0]) for part in parts])

    def check(self, x, result, p, dtype) -> float:
        picks = spread_indices(p["batch"], 4)
        want = torch.bmm(x["a"].cpu()[picks].double(), x["b"].cpu()[picks].double())
        return require(rel_error(result.cpu()[picks], want), dtype, "batched_matmul")


OPS = [Matmul(), BatchedMatmul()]
