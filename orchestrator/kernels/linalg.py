"""matmul, batched_matmul and the factorisations, with well-conditioned synthetic inputs."""

from __future__ import annotations

import math
from typing import Any

import torch

from orchestrator.kernels.base import Kernel, Tensors, rel_error, require, spread_indices, sum_safe_scale, uniform


CHECK_BLOCK_ELEMENTS = 1 << 24  # float64 elements of B a matmul check holds at once (128 MiB)


def _factor_scale(dtype: torch.dtype, k: int) -> float:
    """Each factor's scale, so that an inner product of length k (k/4 on average for uniform
    [0, 1) entries) stays inside float16's range: half of the sum's exponent each."""
    return 2.0 ** math.floor(math.log2(sum_safe_scale(dtype, k, 0.25)) / 2)


class Matmul(Kernel):
    op = "matmul"
    splits = True
    gang_split = ("a",)
    gang_size = "m"

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
    op = "batched_matmul"
    gang_split = ("a", "b")
    gang_size = "batch"

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


def _dominant(n: int, dtype, gen, device, symmetric: bool) -> torch.Tensor:
    """Uniform entries plus n on the diagonal: diagonally dominant, hence well conditioned (and
    positive definite when symmetric, by Gershgorin)."""
    a = torch.rand((n, n), generator=gen, dtype=torch.float64)
    if symmetric:
        a = (a + a.T) / 2
    a += n * torch.eye(n, dtype=torch.float64)
    return a.to(device=device, dtype=dtype)


class Solve(Kernel):
    op = "solve"

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"a": _dominant(p["n"], dtype, gen, device, symmetric=False),
                "b": uniform((p["n"], p["nrhs"]), dtype, gen, device)}

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.solve(x["a"], x["b"])

    def check(self, x, result, p, dtype) -> float:
        a, b = x["a"].cpu().double(), x["b"].cpu().double()
        return require(rel_error(a @ result.cpu().double(), b), dtype, "solve residual")


class Cholesky(Kernel):
    op = "cholesky"

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"a": _dominant(p["n"], dtype, gen, device, symmetric=True)}

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.cholesky(x["a"])

    def check(self, x, result, p, dtype) -> float:
        low = result.cpu().double()
        return require(rel_error(low @ low.T, x["a"].cpu().double()), dtype, "cholesky L L^T")


class Eigh(Kernel):
    op = "eigh"

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"a": _dominant(p["n"], dtype, gen, device, symmetric=True)}

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.eigh(x["a"])

    def check(self, x, result, p, dtype) -> float:
        values, vectors = (t.cpu().double() for t in result)
        a = x["a"].cpu().double()
        return require(rel_error(a @ vectors, vectors * values), dtype, "eigh A V = V L", 10)


class Qr(Kernel):
    op = "qr"

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"a": uniform((p["m"], p["n"]), dtype, gen, device)}

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.qr(x["a"], mode="reduced")

    def check(self, x, result, p, dtype) -> float:
        q, r = (t.cpu().double() for t in result)
        return require(rel_error(q @ r, x["a"].cpu().double()), dtype, "qr Q R", 10)


class Svd(Kernel):
    op = "svd"

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"a": uniform((p["m"], p["n"]), dtype, gen, device)}

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.svd(x["a"], full_matrices=False)

    def check(self, x, result, p, dtype) -> float:
        u, s, vh = (t.cpu().double() for t in result)
        return require(rel_error((u * s) @ vh, x["a"].cpu().double()), dtype, "svd U S V^T", 10)


class Lstsq(Kernel):
    op = "lstsq"

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        a = uniform((p["m"], p["n"]), dtype, gen, device)
        truth = uniform((p["n"], 1), dtype, gen, device)
        return {"a": a, "b": a @ truth + 1e-3 * uniform((p["m"], 1), dtype, gen, device)}

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.lstsq(x["a"], x["b"]).solution

    def check(self, x, result, p, dtype) -> float:
        a, b = x["a"].cpu().double(), x["b"].cpu().double()
        best = torch.linalg.lstsq(a, b).solution
        # compare residual norms: a least-squares solution cannot beat the float64 one
        got = float(torch.linalg.vector_norm(a @ result.cpu().double() - b))
        want = float(torch.linalg.vector_norm(a @ best - b))
        error = (got - want) / max(float(torch.linalg.vector_norm(b)), 1e-30)
        return require(error, dtype, "lstsq residual", 10)


KERNELS = [Matmul(), BatchedMatmul(), Solve(), Cholesky(), Eigh(), Qr(), Svd(), Lstsq()]
