"""Dense linear algebra: products run at the GEMM curve, factorisations at a fraction of it."""

from __future__ import annotations

from typing import Any

from orchestrator.ops.base import FLOAT_ONLY, Kernel, Op, Param, Split

_SINGLE_DEVICE = {
    "multi_gpu": "a distributed factorisation (ScaLAPACK-style) is not implemented; runs on one device",
    "multi_node": "a distributed factorisation (ScaLAPACK-style) is not implemented; runs on one device",
}


class Matmul(Op):
    name = "matmul"
    summary = "C = A*B, A m x k, B k x n"
    params = {"m": Param(), "n": Param(), "k": Param()}
    kernel = Kernel.GEMM
    split = Split.ROW_BLOCKS

    def flops(self, p: dict[str, Any]) -> float:
        return 2.0 * p["m"] * p["n"] * p["k"]

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["m"] * p["k"] + p["k"] * p["n"])

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["m"] * p["n"])

    def replicated_elements(self, p: dict[str, Any]) -> float:
        return float(p["k"] * p["n"])

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        # the check holds a block of B in float64, 2^24 elements at most (kernels/linalg.py)
        return self.working_set_elements(p) * itemsize + 8.0 * min(p["k"] * p["n"], 1 << 24)


class BatchedMatmul(Matmul):
    name = "batched_matmul"
    summary = "a batch of independent matmuls"
    params = {"batch": Param(), "m": Param(), "n": Param(), "k": Param()}

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

    def kernels(self, p: dict[str, Any]) -> int:
        return 1

    def calls(self, p: dict[str, Any], device: str) -> int:
        # A GPU's batched kernel fills the device with the whole batch; CPU BLAS goes matrix by
        # matrix, so each runs at its own size.
        return 1 if device == "gpu" else p["batch"]


def _panels(n: int) -> int:
    """Blocked LAPACK / cuSOLVER factorisations update the trailing matrix once per panel of
    (typically) 256 columns (LAPACK's ILAENV block sizes are 32-256)."""
    return max(1, -(-n // 256))


class _Square(Op):
    """A factorisation of one n x n matrix."""

    kernel = Kernel.FACTORIZATION
    dtypes = FLOAT_ONLY
    not_supported = _SINGLE_DEVICE
    params = {"n": Param()}

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"]) ** 2

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"]) ** 2

    def calls(self, p: dict[str, Any], device: str) -> int:
        return _panels(p["n"])


class Solve(_Square):
    name = "solve"
    summary = "A X = B for a well-conditioned square A"
    params = {"n": Param(), "nrhs": Param(default=1)}

    def flops(self, p: dict[str, Any]) -> float:
        n = float(p["n"])
        return 2 / 3 * n**3 + 2 * n**2 * p["nrhs"]  # LU + two triangular solves

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"]) ** 2 + p["n"] * p["nrhs"]

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["n"] * p["nrhs"])

    def working_set_elements(self, p: dict[str, Any]) -> float:
        return 2 * float(p["n"]) ** 2 + 2 * p["n"] * p["nrhs"]  # A and its LU copy


class Cholesky(_Square):
    name = "cholesky"
    summary = "factor of a symmetric positive definite matrix"

    def flops(self, p: dict[str, Any]) -> float:
        return float(p["n"]) ** 3 / 3


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

    def kernels(self, p: dict[str, Any]) -> int:
        return 4


class _Tall(Op):
    """A factorisation of one m x n matrix."""

    kernel = Kernel.FACTORIZATION
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

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        # LAPACK works on a copy of A, and the check rebuilds A in float64
        return super().peak_bytes(p, itemsize) + p["m"] * p["n"] * (itemsize + 8.0)

    @staticmethod
    def _long_short(p: dict[str, Any]) -> tuple[float, float]:
        return float(max(p["m"], p["n"])), float(min(p["m"], p["n"]))


class Qr(_Tall):
    name = "qr"
    summary = "reduced QR"

    def flops(self, p: dict[str, Any]) -> float:
        m, n = self._long_short(p)
        return 4 * m * n**2 - 4 / 3 * n**3  # Householder 2mn^2 - 2n^3/3, plus forming the thin Q


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

    def kernels(self, p: dict[str, Any]) -> int:
        return 4


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


OPS = [Matmul(), BatchedMatmul(), Solve(), Cholesky(), Qr(), Svd(), Eigh(), Lstsq()]
