"""The cost model's physics against references outside orch: PyTorch's FLOP counter, the
published LAPACK operation counts (LAWN 41), the bytes the harness really moves, and the bytes
a real process group really reduces. And the kernels themselves in half precision and past
2^24 elements, where float rounding used to break them."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from orchestrator import ops

from orchestrator.execute import harness
from orchestrator.execute.task import Task
from orchestrator.ops import ITEMSIZE
from orchestrator.placement import Placement


def _task(op: str, params: dict, dtype: str = "float32", placement: str = "cpu", data: str = "host",
          repeats: int = 1, warmup: int = 0) -> Task:
    return Task(f"{op}-{dtype}", op, params, dtype, Placement.parse(placement), data, repeats, warmup, threads=2)


HALF_CASES = [
    ("dot", {"n": 1_000_000}), ("sum", {"n": 1_000_000}), ("axpy", {"n": 1_000_000}),
    ("kmeans", {"samples": 200_000, "features": 32, "clusters": 16, "iterations": 10}),
    ("kmeans", {"samples": 50_000, "features": 2048, "clusters": 8, "iterations": 3}),
    ("matmul", {"m": 256, "n": 256, "k": 4096}),
    ("matmul", {"m": 8, "n": 8, "k": 1 << 19}),  # 131,072 on average per entry unscaled: inf in float16
    ("batched_matmul", {"batch": 4, "m": 64, "n": 64, "k": 1 << 18}),
    ("train_linear", {"samples": 20_000, "features": 128, "epochs": 1, "batch_size": 256}),
    ("train_mlp", {"samples": 8_192, "features": 64, "hidden": [128, 128], "classes": 10, "epochs": 1,
                   "batch_size": 256}),
]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(("op", "params"), HALF_CASES, ids=[f"{op}-{i}" for i, (op, _) in enumerate(HALF_CASES)])
def test_half_precision_kernels_run_and_pass_their_checks_on_the_cpu(op, params, dtype):
    result = harness.execute(_task(op, params, dtype))
    assert math.isfinite(result.check) and result.measured_s > 0


@pytest.mark.parametrize("n", [20_000_000, (1 << 25) + 3])  # past 2^24, where float32 stops counting by ones
@pytest.mark.parametrize("op", ["dot", "sum", "axpy"])
def test_long_vectors_run_and_pass_their_checks(op, n):
    result = harness.execute(_task(op, {"n": n}, repeats=2, warmup=1))
    assert result.check < 1e-3


def test_axpy_check_counts_every_execution_at_40m():
    """axpy updates y in place: after 1 warm-up and 3 repeats y = y0 + 4 a x, and the check
    reads that at indices spread to the very last element."""
    result = harness.execute(_task("axpy", {"n": 40_000_000}, repeats=3, warmup=1))
    assert result.check < 1e-6


# ---- FLOPs: PyTorch's own counter, on the kernels as they run -----------------------------------

def _counted_flops(op: str, params: dict) -> int:
    kernel = ops.get(op)
    inputs = kernel.make_inputs(params, torch.float32, torch.Generator().manual_seed(0), torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        kernel.run({k: v for k, v in inputs.items() if k not in kernel.check_only}, params)
    return counter.get_total_flops()


@pytest.mark.parametrize(("op", "params"), [
    ("matmul", {"m": 300, "n": 200, "k": 100}),
    ("batched_matmul", {"batch": 5, "m": 40, "n": 30, "k": 20}),
    ("train_linear", {"samples": 1000, "features": 64, "epochs": 2, "batch_size": 128}),
    ("train_mlp", {"samples": 1000, "features": 32, "hidden": [48, 24], "classes": 5, "epochs": 1,
                   "batch_size": 100}),
])
def test_flops_match_pytorchs_flop_counter(op, params):
    """Exact: every GEMM of the forward and backward passes, as torch.utils.flop_counter counts."""
    assert ops.get(op).flops(params) == _counted_flops(op, params)


def test_kmeans_gemm_flops_match_pytorchs_flop_counter():
    """k-means: two GEMMs an iteration (distances, one-hot update), 4 s f c FLOPs; the model adds
    the non-GEMM passes (3 s c + 2 s f an iteration), which the counter does not see."""
    p = {"samples": 3000, "features": 16, "clusters": 8, "iterations": 4}
    counted = _counted_flops("kmeans", p)
    assert counted == p["iterations"] * 4 * 3000 * 16 * 8
    non_gemm = p["iterations"] * (3 * 3000 * 8 + 2 * 3000 * 16)
    assert ops.get("kmeans").flops(p) == counted + non_gemm


def test_lapack_flops_are_the_published_counts():
    """Leading terms of LAPACK Working Note 41's operation counts (multiplications plus
    additions), written out for these sizes."""
    # xPOTRF n^3/3: n = 3000 -> 9.0e9
    assert ops.get("cholesky").flops({"n": 3000}) == pytest.approx(9.0e9)
    # xGETRF 2/3 n^3 + xGETRS 2 n^2 nrhs: n = 3000, nrhs = 10 -> 1.8e10 + 1.8e8
    assert ops.get("solve").flops({"n": 3000, "nrhs": 10}) == pytest.approx(1.818e10)
    # xGEQRF 2mn^2 - 2/3 n^3 + xORGQR (k = n) 2mn^2 - 2/3 n^3: m = 4000, n = 1000 -> 1.4667e10
    assert ops.get("qr").flops({"m": 4000, "n": 1000}) == pytest.approx(1.46667e10, rel=1e-5)
    # syevd: xSYTRD 4/3 n^3 + xSTEDC <= 4/3 n^3 + xORMTR 2 n^3: n = 1000 -> 4.6667e9
    assert ops.get("eigh").flops({"n": 1000}) == pytest.approx(4.66667e9, rel=1e-5)
    # gesdd, QR path: xGEQRF + xORGQR + Q U 6mn^2, xGEBRD 8/3 n^3, xBDSDC 8/3 n^3, xORMBR 4 n^3,
    # less 4/3 n^3 of the two QR terms: m = 4000, n = 1000 -> 2.4e10 + 8.0e9 = 3.2e10
    assert ops.get("svd").flops({"m": 4000, "n": 1000}) == pytest.approx(3.2e10, rel=1e-5)
    # gelsy / gels: QR 2mn^2 - 2/3 n^3, Q^T b and the triangular solve ~4mn: m = 4000, n = 1000
    assert ops.get("lstsq").flops({"m": 4000, "n": 1000}) == pytest.approx(7.3333e9 + 1.6e7, rel=1e-4)


# ---- Bytes the harness really moves ------------------------------------------------------------

GPU_OPS = [name for name in ops.names() if not ops.get(name).where_not("gpu")]
SMALL = {"dot": {"n": 1000}, "axpy": {"n": 1000}, "sum": {"n": 1000}, "fft": {"n": 1024},
         "matmul": {"m": 30, "n": 20, "k": 10}, "batched_matmul": {"batch": 3, "m": 8, "n": 6, "k": 4},
         "solve": {"n": 40, "nrhs": 3}, "cholesky": {"n": 40}, "eigh": {"n": 40}, "qr": {"m": 50, "n": 20},
         "svd": {"m": 50, "n": 20}, "lstsq": {"m": 50, "n": 20},
         "kmeans": {"samples": 500, "features": 4, "clusters": 3, "iterations": 2},
         "train_linear": {"samples": 512, "features": 8, "epochs": 1, "batch_size": 128},
         "train_mlp": {"samples": 512, "features": 8, "hidden": [16], "classes": 3, "epochs": 1, "batch_size": 128}}


def _tensor_bytes(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, dict):
        return sum(_tensor_bytes(v) for v in x.values())
    if isinstance(x, tuple | list):
        return sum(_tensor_bytes(v) for v in x)
    return 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", GPU_OPS)
def test_transfer_bytes_are_what_the_harness_moves(op, dtype, monkeypatch):
    """A GPU job with `data: host` (on a CPU stand-in GPU): every tensor the harness hands to its
    move step, in and out, per execution, against the model's input and output bytes."""
    if dtype not in ops.get(op).dtypes:
        pytest.skip(f"{op} has no {dtype}")
    monkeypatch.setenv("ORCH_FAKE_GPUS", "1")
    moved: list[tuple[str, int]] = []
    real = harness.to_device
    depth = [0]

    def counting(x, device):  # to_device recurses into dicts through the module: count the outer call
        if not depth[0]:
            moved.append((device.type, _tensor_bytes(x)))
        depth[0] += 1
        try:
            return real(x, device)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(harness, "to_device", counting)
    harness.execute(_task(op, SMALL[op], dtype, placement="gpu", repeats=2, warmup=1))
    executions = len(moved) // 2  # warm-up (GPU jobs warm until two executions agree) and repeats
    assert executions >= 3
    itemsize = ITEMSIZE[dtype]
    into = sum(nbytes for _, nbytes in moved[0::2]) / executions  # inputs to the compute device
    out = sum(nbytes for _, nbytes in moved[1::2]) / executions    # the result back to the host
    assert into == ops.get(op).input_bytes(SMALL[op], itemsize)
    assert out == ops.get(op).output_bytes(SMALL[op], itemsize)


# ---- Bytes a real process group reduces ---------------------------------------------------------

def _one_rank(task: Task) -> dict:
    """The gang's rank function in this process, as the only rank of a real gloo group."""
    from orchestrator.backends.worker import free_port
    from orchestrator.execute.gang import rank_main

    return rank_main(task, 0, 1, f"tcp://127.0.0.1:{free_port('127.0.0.1')}")


def test_ddp_reduces_the_modelled_gradient_bytes_in_the_modelled_buckets(monkeypatch):
    """Training as a gang: DistributedDataParallel's every bucket all-reduce (seen through a
    communication hook) per step carries every gradient, in as many buckets as modelled."""
    import torch.nn.parallel as parallel

    buckets: list[int] = []

    class Counting(parallel.DistributedDataParallel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

            def hook(state, bucket):
                buckets.append(bucket.buffer().numel() * bucket.buffer().element_size())
                return _allreduce(bucket)

            self.register_comm_hook(None, hook)

    def _allreduce(bucket):
        import torch.distributed as dist

        return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda fut: fut.value()[0])

    monkeypatch.setattr(parallel, "DistributedDataParallel", Counting)
    p = {"samples": 1024, "features": 16, "hidden": [32], "classes": 4, "epochs": 1, "batch_size": 128}
    _one_rank(_task("train_mlp", p, "float32", placement="cpu@1", repeats=1, warmup=0))
    op = ops.get("train_mlp")
    assert len(buckets) == op.collectives(p) * op.collective_tensors(p)
    assert sum(buckets) == op.collectives(p) * op.collective_bytes(p, 4)


def test_kmeans_all_reduces_the_modelled_bytes_every_iteration(monkeypatch):
    """k-means as a gang: every Lloyd iteration all-reduces its per-cluster sums, counts and
    inertia (the modelled bytes, in the modelled number of tensors); the check one more."""
    from orchestrator.execute.gang import Comm

    sent: list[int] = []
    real = Comm.all_reduce

    def counting(self, tensor):
        sent.append(_tensor_bytes(tensor))
        return real(self, tensor)

    monkeypatch.setattr(Comm, "all_reduce", counting)
    p = {"samples": 4000, "features": 8, "clusters": 5, "iterations": 3}
    _one_rank(_task("kmeans", p, "float32", placement="cpu@1", repeats=1, warmup=0))
    op = ops.get("kmeans")
    rounds, check = sent[:-1], sent[-1:]
    assert len(rounds) == op.collectives(p) * op.collective_tensors(p) and check == [4]
    assert sum(rounds) == op.collectives(p) * op.collective_bytes(p, 4)
