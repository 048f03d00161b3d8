"""Machine-learning ops: k-means and minibatch SGD training (PyTorch), data parallel when split."""

from __future__ import annotations

import math
from typing import Any

from orchestrator.ops.base import Kernel, Op, Param, Split

# Kernel launches per layer per step: forward GEMM + bias + activation, backward twice that,
# plus an optimiser update per parameter tensor (PyTorch eager mode).
_LAUNCHES_PER_LAYER = 9
_LAUNCHES_PER_STEP = 6  # loss, zero_grad, data slice, ...


DDP_BUCKET_BYTES = 25 * 2**20


class Kmeans(Op):
    name = "kmeans"
    summary = "Lloyd's k-means on synthetic blobs"
    params = {"samples": Param(), "features": Param(), "clusters": Param(), "iterations": Param(default=10)}
    kernel = Kernel.GEMM
    split = Split.DATA_PARALLEL

    def flops(self, p: dict[str, Any]) -> float:
        s, f, c = p["samples"], p["features"], p["clusters"]
        # distances via ||x||^2 - 2 x.c + ||c||^2 (a GEMM), argmin, and the update (one-hot^T x, a GEMM)
        return p["iterations"] * (4.0 * s * f * c + 3.0 * s * c + 2.0 * s * f)

    def input_elements(self, p: dict[str, Any]) -> float:
        return float((p["samples"] + p["clusters"]) * p["features"])  # the points and the initial centroids

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["clusters"] * p["features"])  # the centroids (the inertia is a Python float)

    def traffic_elements(self, p: dict[str, Any]) -> float:
        # every iteration reads the data three times and makes four passes over the s x c
        # distance and one-hot matrices
        return p["iterations"] * float(p["samples"] * (3 * p["features"] + 4 * p["clusters"]))

    def working_set_elements(self, p: dict[str, Any]) -> float:
        return float(p["samples"] * (p["features"] + p["clusters"] + 1))

    def kernels(self, p: dict[str, Any]) -> int:
        return 8 * p["iterations"]

    def calls(self, p: dict[str, Any], device: str) -> int:
        return 2 * p["iterations"]

    def collectives(self, p: dict[str, Any]) -> int:
        return p["iterations"]

    def collective_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        # per-cluster sums (accumulated in at least float32), int64 counts, the float32 inertia
        return p["clusters"] * p["features"] * max(itemsize, 4) + 8.0 * p["clusters"] + 4.0

    def collective_tensors(self, p: dict[str, Any]) -> int:
        return 3


class _Training(Op):
    kernel = Kernel.TRAINING
    split = Split.DATA_PARALLEL

    def layers(self, p: dict[str, Any]) -> list[tuple[int, int]]:
        raise NotImplementedError

    def parameters(self, p: dict[str, Any]) -> float:
        return float(sum(i * o + o for i, o in self.layers(p)))

    def steps(self, p: dict[str, Any]) -> int:
        return p["epochs"] * math.ceil(p["samples"] / p["batch_size"])

    def flops(self, p: dict[str, Any]) -> float:
        """GEMM FLOPs, as torch.utils.flop_counter counts them: every layer's forward (2io per
        sample) and weight gradient (2io), and the input gradient (2io) of every layer but the
        first (the data needs none)."""
        per_sample = sum(2.0 * i * o * (2 if first else 3) for first, (i, o) in
                         zip([True] + [False] * len(self.layers(p)), self.layers(p)))
        return per_sample * p["samples"] * p["epochs"]

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["samples"] * p["features"])  # the labels are int64: input_bytes

    def input_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        return self.input_elements(p) * itemsize + 8.0 * p["samples"]

    def output_elements(self, p: dict[str, Any]) -> float:
        return self.parameters(p)  # the trained model's parameters come back

    def traffic_elements(self, p: dict[str, Any]) -> float:
        activations = sum(o for _, o in self.layers(p)) * p["samples"] * 3.0
        weights = self.parameters(p) * 4.0 * self.steps(p)  # read, grad, update, momentum
        return p["epochs"] * self.input_elements(p) + p["epochs"] * activations + weights

    def working_set_elements(self, p: dict[str, Any]) -> float:
        activations = sum(o for _, o in self.layers(p)) * p["batch_size"] * 2
        return self.input_elements(p) + 4 * self.parameters(p) + activations

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        return self.working_set_elements(p) * itemsize + 8.0 * p["samples"]  # the check reads only the losses

    def kernels(self, p: dict[str, Any]) -> int:
        return self.steps(p) * (_LAUNCHES_PER_LAYER * len(self.layers(p)) + _LAUNCHES_PER_STEP)

    def calls(self, p: dict[str, Any], device: str) -> int:
        return self.steps(p) * len(self.layers(p)) * 3  # forward, and two GEMMs backward per layer

    def collectives(self, p: dict[str, Any]) -> int:
        return self.steps(p)

    def collective_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        return self.parameters(p) * itemsize  # every gradient, in the parameters' dtype

    def collective_tensors(self, p: dict[str, Any]) -> int:
        # DistributedDataParallel all-reduces the gradients in buckets of 25 MiB (its bucket_cap_mb)
        return max(1, math.ceil(self.parameters(p) * 4 / DDP_BUCKET_BYTES))


class TrainLinear(_Training):
    name = "train_linear"
    summary = "logistic regression by minibatch SGD (PyTorch)"
    params = {"samples": Param(), "features": Param(), "epochs": Param(default=1), "batch_size": Param(default=256)}

    def layers(self, p: dict[str, Any]) -> list[tuple[int, int]]:
        return [(p["features"], 1)]


class TrainMlp(_Training):
    name = "train_mlp"
    summary = "MLP classifier by minibatch SGD (PyTorch)"
    params = {"samples": Param(), "features": Param(), "hidden": Param(kind="size_list"), "classes": Param(),
              "epochs": Param(default=1), "batch_size": Param(default=256)}

    def layers(self, p: dict[str, Any]) -> list[tuple[int, int]]:
        widths = [p["features"], *p["hidden"], p["classes"]]
        return list(zip(widths[:-1], widths[1:]))


OPS = [Kmeans(), TrainLinear(), TrainMlp()]
