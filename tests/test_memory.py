"""The memory model against the worker's real peak: each op run at two sizes in a fresh process,
the growth of its peak resident set between them against the growth of `Op.peak_bytes` (what
feasibility checks against host memory). Differences between two sizes cancel the interpreter's
and torch's own footprint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator.cost.candidates import candidates
from orchestrator.cost.model import predict
from orchestrator.plan.hardware import hardware_for
from orchestrator.profile import store
from orchestrator.workload.model import Job

# The peak is VmHWM of /proc/self/status: ru_maxrss carries the parent's peak across fork and
# exec, so a child of a large pytest process reports the parent's size.
PROBE = """
import json, sys
import torch
torch.set_num_threads(1)
from orchestrator.execute.harness import execute
from orchestrator.execute.task import Task
from orchestrator import ops
from orchestrator.ops import ITEMSIZE
op, dtype, sizes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = []
for p in sizes:
    execute(Task("peak", op, p, dtype, repeats=1, warmup=1, threads=1))
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    out.append((int(hwm.split()[1]) * 1024, ops.get(op).peak_bytes(p, ITEMSIZE[dtype])))
print(json.dumps(out))
"""

CASES = [  # (op, dtype, smaller, larger): the larger adds 100 MB to 1.5 GB
    ("python_dot", "float64", {"n": 1_000_000}, {"n": 4_000_000}),
    ("dot", "float32", {"n": 10_000_000}, {"n": 40_000_000}),
    ("axpy", "float32", {"n": 10_000_000}, {"n": 40_000_000}),
    ("sum", "float32", {"n": 10_000_000}, {"n": 40_000_000}),
    ("fft", "float32", {"n": 2_000_000}, {"n": 8_000_000}),
    ("matmul", "float32", {"m": 2048, "n": 2048, "k": 2048}, {"m": 4096, "n": 4096, "k": 4096}),
    ("batched_matmul", "float32", {"batch": 64, "m": 256, "n": 256, "k": 256},
     {"batch": 256, "m": 256, "n": 256, "k": 256}),
    ("solve", "float64", {"n": 1024, "nrhs": 1}, {"n": 2048, "nrhs": 1}),
    ("cholesky", "float64", {"n": 1024}, {"n": 2048}),
    ("eigh", "float64", {"n": 1024}, {"n": 2048}),
    ("qr", "float32", {"m": 8192, "n": 512}, {"m": 16384, "n": 1024}),
    ("svd", "float32", {"m": 8192, "n": 512}, {"m": 16384, "n": 1024}),
    ("lstsq", "float32", {"m": 16384, "n": 256}, {"m": 65536, "n": 256}),
    ("kmeans", "float32", {"samples": 500_000, "features": 32, "clusters": 16, "iterations": 2},
     {"samples": 2_000_000, "features": 32, "clusters": 16, "iterations": 2}),
    ("train_linear", "float32", {"samples": 200_000, "features": 256, "epochs": 1, "batch_size": 4096},
     {"samples": 800_000, "features": 256, "epochs": 1, "batch_size": 4096}),
    ("train_mlp", "float32", {"samples": 200_000, "features": 256, "hidden": [64], "classes": 10, "epochs": 1,
                              "batch_size": 4096},
     {"samples": 800_000, "features": 256, "hidden": [64], "classes": 10, "epochs": 1, "batch_size": 4096}),
]


@pytest.mark.parametrize(("op", "dtype", "smaller", "larger"), CASES, ids=[c[0] for c in CASES])
def test_peak_memory_model_follows_the_measured_peak(op, dtype, smaller, larger):
    """Within 0.6-1.6x of the measured growth (python_dot measured 6x its old working set)."""
    done = subprocess.run([sys.executable, "-c", PROBE, op, dtype, json.dumps([smaller, larger])],
                          capture_output=True, text=True, timeout=300, check=True)
    (rss0, model0), (rss1, model1) = json.loads(done.stdout.strip().splitlines()[-1])
    ratio = (rss1 - rss0) / (model1 - model0)
    assert 0.6 < ratio < 1.6, f"{op}: measured {(rss1 - rss0) / 1e6:.0f} MB, modelled {(model1 - model0) / 1e6:.0f} MB"


def test_a_python_loop_too_big_for_host_memory_is_infeasible():
    """n = 1G: 16 GB of float64, but 96 GB of Python floats, on a 64 GB node."""
    hw = hardware_for(store.resolve("cpu-c7i-8xlarge"), calibrated=False)
    prediction = predict(Job("p", "python_dot", {"n": 10**9}, "float64"), candidates(hw)[0], hw)
    assert not prediction.feasible and "96 GB" in prediction.note
