"""Machine-learning ops: k-means and minibatch SGD training (PyTorch), data parallel when split."""

from __future__ import annotations

import math
from typing import Any

from orchestrator.ops.base import Kernel, Op, Param, Split

# Kernel launches per layer per step: forward GEMM + bias + activation, backward twice that,
# plus an optimiser update per parameter tensor (PyTorch eager mode).
_LAUNCHES_PER_LAYER = 9
_LAUNCHES_PER_STEP = 6  # loss, zero_grad, data slice, ...


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
        return float(p["samples"] * p["features"])

    def output_elements(self, p: dict[str, Any]) -> float:
        return float(p["clusters"] * p["features"] + p["samples"])

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

    def collective_elements(self, p: dict[str, Any]) -> float:
        return float(p["clusters"] * (p["features"] + 1))  # partial sums and counts


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
        forward = sum(2.0 * i * o for i, o in self.layers(p))
        return 3.0 * forward * p["samples"] * p["epochs"]  # backward costs about twice the forward

    def input_elements(self, p: dict[str, Any]) -> float:
        return float(p["samples"] * (p["features"] + 1))  # features and labels

    def output_elements(self, p: dict[str, Any]) -> float:
        return self.parameters(p)

    def traffic_elements(self, p: dict[str, Any]) -> float:
        activations = sum(o for _, o in self.layers(p)) * p["samples"] * 3.0
        weights = self.parameters(p) * 4.0 * self.steps(p)  # read, grad, update, momentum
        return p["epochs"] * self.input_elements(p) + p["epochs"] * activations + weights

    def working_set_elements(self, p: dict[str, Any]) -> float:
        activations = sum(o for _, o in self.layers(p)) * p["batch_size"] * 2
        return self.input_elements(p) + 4 * self.parameters(p) + activations

    def kernels(self, p: dict[str, Any]) -> int:
        return self.steps(p) * (_LAUNCHES_PER_LAYER * len(self.layers(p)) + _LAUNCHES_PER_STEP)

    def calls(self, p: dict[str, Any], device: str) -> int:
        return self.steps(p) * len(self.layers(p)) * 3  # forward, and two GEMMs backward per layer

    def collectives(self, p: dict[str, Any]) -> int:
        return self.steps(p)

    def collective_elements(self, p: dict[str, Any]) -> float:
        return self.parameters(p)


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
