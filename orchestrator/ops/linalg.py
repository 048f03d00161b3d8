"""Factorisations and solves of one matrix, at a fraction of the GEMM curve (blocked LAPACK on the
CPU, cuSOLVER on a GPU), with well-conditioned synthetic inputs."""

from __future__ import annotations

from typing import Any

from orchestrator.ops.base import FLOAT_ONLY, Op, Param, Rate
from orchestrator.ops.tensors import Tensors, rel_error, require, torch, uniform

_SINGLE_DEVICE = {
    "multi_gpu": "a distributed factorisation (ScaLAPACK-style) is not implemented; runs on one device",
    "multi_node": "a distributed factorisation (ScaLAPACK-style) is not implemented; runs on one device",
}


def _panels(n: int) -> int:
    """Blocked LAPACK / cuSOLVER factorisations update the trailing matrix once per panel of
    (typically) 256 columns (LAPACK's ILAENV block sizes are 32-256)."""
    return max(1, -(-n // 256))


def _dominant(n: int, dtype, gen, device, symmetric: bool) -> Any:
    """Uniform entries plus n on the diagonal: diagonally dominant, hence well conditioned (and
    positive definite when symmetric, by Gershgorin)."""
    a = torch.rand((n, n), generator=gen, dtype=torch.float64)
    if symmetric:
        a = (a + a.T) / 2
    a += n * torch.eye(n, dtype=torch.float64)
    return a.to(device=device, dtype=dtype)


class _Square(Op):
    """A factorisation of one n x n matrix."""

    rate = Rate.FACTORIZATION
    dtypes = FLOAT_ONLY
    not_supported = _SINGLE_DEVICE
    params = {"n": Param()}

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"]) ** 2

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"]) ** 2

    def calls(self, p: dict[str, Any], device: str) -> int:
        return _panels(p["n"])

    def aligned_sizes(self, p: dict[str, Any]) -> dict[str, int]:
        return {"n": int(p["n"])}

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"a": _dominant(p["n"], dtype, gen, device, symmetric=True)}


class Solve(_Square):
    name = "solve"
    summary = "A X = B for a well-conditioned square A"
    params = {"n": Param(), "nrhs": Param(default=1, scales=False)}

    def flops(self, p: dict[str, Any]) -> float:
        n = float(p["n"])
        return 2 / 3 * n**3 + 2 * n**2 * p["nrhs"]  # LU + two triangular solves

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"]) ** 2 + p["n"] * p["nrhs"]

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"] * p["nrhs"])

    def working_set_elements(self, p: dict[str, Any]) -> float:
        return 2 * float(p["n"]) ** 2 + 2 * p["n"] * p["nrhs"]  # A and its LU copy

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"a": _dominant(p["n"], dtype, gen, device, symmetric=False),
                "b": uniform((p["n"], p["nrhs"]), dtype, gen, device)}

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.solve(x["a"], x["b"])

    def check(self, x, result, p, dtype) -> float:
        a, b = x["a"].cpu().double(), x["b"].cpu().double()
        return require(rel_error(a @ result.cpu().double(), b), dtype, "solve residual")


class Cholesky(_Square):
    name = "cholesky"
    summary = "factor of a symmetric positive definite matrix"

    def flops(self, p: dict[str, Any]) -> float:
        return float(p["n"]) ** 3 / 3

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.cholesky(x["a"])

    def check(self, x, result, p, dtype) -> float:
        low = result.cpu().double()
        return require(rel_error(low @ low.T, x["a"].cpu().double()), dtype, "cholesky L L^T")


class Eigh(_Square):
    name = "eigh"
    summary = "eigen-decomposition of a symmetric matrix"

    def flops(self, p: dict[str, Any]) -> float:
        """torch.linalg.eigh calls LAPACK syevd (cuSOLVER syevd on a GPU): tridiagonal reduction
        (xSYTRD, 4/3 n^3, LAWN 41), divide and conquer on the tridiagonal matrix (xSTEDC, at
        most about 4/3 n^3 without deflation: Demmel, Applied Numerical Linear Algebra, 5.3.3),
        and the back-transformation of the eigenvectors (xORMTR, 2 n^3, LAWN 41)."""
        return (4 / 3 + 4 / 3 + 2) * float(p["n"]) ** 3

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"]) ** 2 + p["n"]  # the eigenvectors and the eigenvalues

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        return super().peak_bytes(p, itemsize) + 8.0 * float(p["n"]) ** 2  # the check's A V in float64

    def launches(self, p: dict[str, Any]) -> int:
        return 4

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.eigh(x["a"])

    def check(self, x, result, p, dtype) -> float:
        values, vectors = (t.cpu().double() for t in result)
        a = x["a"].cpu().double()
        return require(rel_error(a @ vectors, vectors * values), dtype, "eigh A V = V L", 10)


class _Tall(Op):
    """A factorisation of one m x n matrix."""

    rate = Rate.FACTORIZATION
    dtypes = FLOAT_ONLY
    not_supported = _SINGLE_DEVICE
    params = {"m": Param(), "n": Param()}

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["m"] * p["n"])

    def output_elements(self, p: dict[str, Any]) -> float:
        small = min(p["m"], p["n"])
        return float(p["m"] * small + small * p["n"])

    def calls(self, p: dict[str, Any], device: str) -> int:
        return _panels(min(p["m"], p["n"]))

    def aligned_sizes(self, p: dict[str, Any]) -> dict[str, int]:
        """The panel width n and the leading dimension m (torch hands LAPACK a column-major
        copy: lda = m), each costing on its own: on one thread of this VM lstsq of 4000 x 256
        took 1.77x the time of 4000 x 250, of 4096 x 250 1.36x, of 4096 x 256 2.1x."""
        return {"m": int(p["m"]), "n": int(p["n"])}

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        # LAPACK works on a copy of A, and the check rebuilds A in float64
        return super().peak_bytes(p, itemsize) + p["m"] * p["n"] * (itemsize + 8.0)

    @staticmethod
    def _long_short(p: dict[str, Any]) -> tuple[float, float]:
        return float(max(p["m"], p["n"])), float(min(p["m"], p["n"]))

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        return {"a": uniform((p["m"], p["n"]), dtype, gen, device)}


class Qr(_Tall):
    name = "qr"
    summary = "reduced QR"

    def flops(self, p: dict[str, Any]) -> float:
        m, n = self._long_short(p)
        return 4 * m * n**2 - 4 / 3 * n**3  # Householder 2mn^2 - 2n^3/3, plus forming the thin Q

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.qr(x["a"], mode="reduced")

    def check(self, x, result, p, dtype) -> float:
        q, r = (t.cpu().double() for t in result)
        return require(rel_error(q @ r, x["a"].cpu().double()), dtype, "qr Q R", 10)


class Svd(_Tall):
    name = "svd"
    summary = "thin SVD"

    def flops(self, p: dict[str, Any]) -> float:
        """torch.linalg.svd calls LAPACK gesdd on the CPU. For a thin SVD of an m x n matrix (m >=
        n) it takes the QR path (LAWN 41 counts): xGEQRF 2mn^2 - 2/3 n^3; xGEBRD of R 8/3 n^3;
        xBDSDC, divide and conquer with both sets of vectors, about 8/3 n^3 without deflation;
        xORMBR to apply both bidiagonal reflector sets, 4 n^3; xORGQR to form Q, 2mn^2 - 2/3 n^3;
        and Q times the small U, 2mn^2. cuSOLVER's Jacobi SVD does more; the GPU op benchmark's
        scale carries that."""
        m, n = self._long_short(p)
        return 6 * m * n**2 + (-2 / 3 + 8 / 3 + 8 / 3 + 4 - 2 / 3) * n**3

    def output_elements(self, p: dict[str, Any]) -> float:
        return super().output_elements(p) + min(p["m"], p["n"])  # U, V^T and the singular values

    def launches(self, p: dict[str, Any]) -> int:
        return 4

    def run(self, x: Tensors, p) -> Any:
        return torch.linalg.svd(x["a"], full_matrices=False)

    def check(self, x, result, p, dtype) -> float:
        u, s, vh = (t.cpu().double() for t in result)
        return require(rel_error((u * s) @ vh, x["a"].cpu().double()), dtype, "svd U S V^T", 10)


class Lstsq(_Tall):
    name = "lstsq"
    summary = "least squares, m >= n"

    def flops(self, p: dict[str, Any]) -> float:
        m, n = self._long_short(p)
        return 2 * m * n**2 - 2 / 3 * n**3 + 4 * m * n  # Householder QR, apply Q^T, back-substitute

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["m"] * p["n"] + p["m"])  # A and the one right-hand side b

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"])

    def invalid(self, p: dict[str, Any]) -> str | None:
        if p["m"] < p["n"]:
            return f"m: lstsq needs m >= n (got m={p['m']}, n={p['n']})"
        return None

    def grown(self, p: dict[str, Any], factor: float) -> dict[str, Any]:
        out = super().grown(p, factor)
        return {**out, "m": max(out["m"], out["n"])}

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


OPS = [Solve(), Cholesky(), Qr(), Svd(), Eigh(), Lstsq()]
