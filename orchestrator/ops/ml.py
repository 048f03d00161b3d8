"""Machine-learning ops: Lloyd's k-means and minibatch-SGD training in PyTorch, data parallel when
split (k-means all-reduces its per-cluster sums each iteration; training runs as
DistributedDataParallel)."""

from __future__ import annotations

import abc
import math
from typing import Any

from orchestrator.ops.base import Op, Param, Rate, Split
from orchestrator.ops.tensors import KernelCheckError, Tensors, normal, sum_safe_scale, torch

LEARNING_RATE = 0.05

# Kernel launches per layer per step: forward GEMM + bias + activation, backward twice that,
# plus an optimiser update per parameter tensor (PyTorch eager mode).
_LAUNCHES_PER_LAYER = 9
_LAUNCHES_PER_STEP = 6  # loss, zero_grad, data slice, ...
DDP_BUCKET_BYTES = 25 * 2**20


class Kmeans(Op):
    name = "kmeans"
    summary = "Lloyd's k-means on synthetic blobs"
    params = {"samples": Param(), "features": Param(scales=False), "clusters": Param(scales=False),
              "iterations": Param(default=10, scales=False)}
    rate = Rate.GEMM
    split = Split.DATA_PARALLEL
    gang_split = ("x",)
    gang_size = "samples"
    # each pass writes fresh temporaries as large as the points (distances, one-hot): 46-92 ns a
    # sample and iteration on this VM from 1.2 to 25 MB, none faster where the points fit the caches
    cache_resident = False

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

    def launches(self, p: dict[str, Any]) -> int:
        return 8 * p["iterations"]

    def rounds(self, p: dict[str, Any]) -> int:
        """A job of 20K x 32 x 16 and 10 iterations runs each iteration as the profile's reference
        of 5 iterations did (0.74x predicted when its scale was read at twice that work)."""
        return p["iterations"]

    def calls(self, p: dict[str, Any], device: str) -> int:
        return 2 * p["iterations"]

    def collectives(self, p: dict[str, Any]) -> int:
        return p["iterations"]

    def collective_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        # per-cluster sums (accumulated in at least float32), int64 counts, the float32 inertia
        return p["clusters"] * p["features"] * max(itemsize, 4) + 8.0 * p["clusters"] + 4.0

    def collective_tensors(self, p: dict[str, Any]) -> int:
        return 3

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        s, f, c = p["samples"], p["features"], p["clusters"]
        # blobs of spread 0.1 around unit-normal centres: squared norms of about `features`,
        # inside float16's range up to ~60,000 features
        centers = normal((c, f), torch.float32, gen, torch.device("cpu"))
        labels = torch.randint(0, c, (s,), generator=gen)
        points = centers[labels] + 0.1 * normal((s, f), torch.float32, gen, torch.device("cpu"))
        return {"x": points.to(device=device, dtype=dtype), "init": points[:c].clone().to(device=device, dtype=dtype)}

    @staticmethod
    def _partials(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-cluster sums (at least float32) and int64 counts of the points nearest each
        centroid, and the inertia (at least float32): half-precision sums of 200,000 points
        overflow float16, so the partials leave the kernel in a wider type."""
        distances = (x * x).sum(1, keepdim=True) - 2 * x @ centroids.T + (centroids * centroids).sum(1)
        nearest = distances.argmin(1)
        wide = torch.promote_types(x.dtype, torch.float32)
        # the update as a second GEMM (one-hot^T x): far faster than a scatter-add on every
        # device; in float16 the one-hot holds a power of two that keeps the sums in range
        scale = sum_safe_scale(x.dtype, x.shape[0], 4.0)
        onehot = torch.nn.functional.one_hot(nearest, centroids.shape[0]).to(x.dtype)
        if scale != 1.0:
            onehot.mul_(scale)
        sums = (onehot.T @ x).to(wide)
        if scale != 1.0:
            sums.div_(scale)
        counts = torch.bincount(nearest, minlength=centroids.shape[0])
        inertia = distances.gather(1, nearest[:, None]).sum(dtype=wide)
        return sums, counts, inertia

    def _lloyd(self, shards: list[torch.Tensor], init: torch.Tensor, iterations: int) -> tuple[torch.Tensor, float]:
        centroids = init.clone()
        inertia = torch.zeros((), device=init.device)
        for _ in range(iterations):
            partials = [self._partials(shard, centroids.to(shard.device)) for shard in shards]
            # the reduction: partial sums, counts and inertias meet on the first device
            sums = sum(part[0].to(init.device) for part in partials)
            counts = sum(part[1].to(init.device) for part in partials)
            inertia = sum(part[2].to(init.device) for part in partials)
            means = sums / counts.clamp(min=1)[:, None]
            centroids = torch.where(counts[:, None] > 0, means, centroids.to(means.dtype)).to(init.dtype)
        return centroids, float(inertia)

    def run(self, x: Tensors, p) -> Any:
        return self._lloyd([x["x"]], x["init"], p["iterations"])

    def run_split(self, x, p, devices, data_on_host) -> Any:
        shards = [part.to(d) for part, d in zip(x["x"].tensor_split(len(devices)), devices)]
        return self._lloyd(shards, x["init"].to(devices[0]), p["iterations"])

    def run_rank(self, x, p, comm) -> Any:
        """Lloyd on this rank's points; each iteration's per-cluster sums, counts and inertia
        are all-reduced, so every rank moves the same centroids (no round trip to a client)."""
        centroids = x["init"].clone()
        inertia = torch.zeros(())
        for _ in range(p["iterations"]):
            sums, counts, inertia = (comm.all_reduce(part) for part in self._partials(x["x"], centroids))
            means = sums / counts.clamp(min=1)[:, None]
            centroids = torch.where(counts[:, None] > 0, means, centroids.to(means.dtype)).to(x["init"].dtype)
        return centroids, float(inertia)

    def check_rank(self, x, result, p, dtype, comm) -> float:
        start = float(comm.all_reduce(self._partials(x["x"].float().cpu(), x["init"].float().cpu())[2]))
        return self._no_rise(start, result[1])

    def check(self, x, result, p, dtype) -> float:
        _, inertia = result
        return self._no_rise(float(self._partials(x["x"].float().cpu(), x["init"].float().cpu())[2]), inertia)

    @staticmethod
    def _no_rise(start: float, inertia: float) -> float:
        if not inertia <= start * 1.001:
            raise KernelCheckError(f"kmeans: inertia rose from {start:.4g} to {inertia:.4g}")
        return inertia / max(start, 1e-30)


class _Training(Op):
    rate = Rate.TRAINING
    split = Split.DATA_PARALLEL
    gang_split = ("x", "y")
    gang_size = "samples"

    @abc.abstractmethod
    def widths(self, p: dict[str, Any]) -> list[int]:
        """The width of the input, of each hidden layer and of the output."""

    def layers(self, p: dict[str, Any]) -> list[tuple[int, int]]:
        widths = self.widths(p)
        return list(zip(widths[:-1], widths[1:]))

    def parameters(self, p: dict[str, Any]) -> float:
        return float(sum(i * o + o for i, o in self.layers(p)))

    def steps(self, p: dict[str, Any]) -> int:
        return p["epochs"] * math.ceil(p["samples"] / p["batch_size"])

    def rounds(self, p: dict[str, Any]) -> int:
        """Every step repeats the same work on another batch."""
        return self.steps(p)

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

    def launches(self, p: dict[str, Any]) -> int:
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

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        widths = self.widths(p)
        features = normal((p["samples"], p["features"]), torch.float32, gen, torch.device("cpu"))
        teacher = normal((p["features"], widths[-1]), torch.float32, gen, torch.device("cpu"))
        scores = features @ teacher
        labels = (scores[:, 0] > 0).long() if widths[-1] == 1 else scores.argmax(1)  # int64 either way
        return {"x": features.to(device=device, dtype=dtype), "y": labels.to(device)}

    def _model(self, p: dict[str, Any], dtype: torch.dtype, device: torch.device, seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        widths = self.widths(p)
        layers: list[torch.nn.Module] = []
        for i, (inp, out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(torch.nn.Linear(inp, out))
            if i < len(widths) - 2:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers).to(device=device, dtype=dtype)

    def _loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = model(x)
        if out.shape[1] == 1:
            return torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0].float(), y.float())
        return torch.nn.functional.cross_entropy(out.float(), y.long())

    def _train(self, x: Tensors, p, devices: list[torch.device]) -> tuple[float, float, tuple[torch.Tensor, ...]]:
        """Data parallel SGD: one replica per device, gradients averaged on the first device and
        sent back each step. Returns the first and last loss and the trained parameters."""
        dtype = x["x"].dtype
        replicas = [self._model(p, dtype, d) for d in devices]
        shards = [(xs.to(d), ys.to(d)) for xs, ys, d in
                  zip(x["x"].tensor_split(len(devices)), x["y"].tensor_split(len(devices)), devices)]
        first = last = None
        batch = max(1, p["batch_size"] // len(devices))
        for _ in range(p["epochs"]):
            for start in range(0, shards[0][0].shape[0], batch):
                losses = []
                for model, (xs, ys) in zip(replicas, shards):
                    model.zero_grad(set_to_none=True)
                    loss = self._loss(model, xs[start:start + batch], ys[start:start + batch])
                    loss.backward()
                    losses.append(loss.detach())
                with torch.no_grad():
                    for params in zip(*(m.parameters() for m in replicas)):
                        grad = sum(param.grad.to(devices[0]) for param in params) / len(params)
                        for param in params:
                            param -= LEARNING_RATE * grad.to(param.device)
                last = sum(loss.to(devices[0]) for loss in losses) / len(losses)
                first = last if first is None else first
        return float(first), float(last), tuple(param.detach() for param in replicas[0].parameters())

    def run(self, x: Tensors, p) -> Any:
        return self._train(x, p, [x["x"].device])

    def run_rank(self, x, p, comm) -> Any:
        """Data-parallel SGD as DistributedDataParallel: one replica per rank on its shard, DDP
        averaging the gradients over the ranks every step; every rank takes as many steps as the
        largest shard needs (a shorter one repeats its tail). Returns the first and last loss,
        averaged over the ranks."""
        from torch.nn.parallel import DistributedDataParallel

        model = self._model(p, x["x"].dtype, comm.device)
        ddp = DistributedDataParallel(model, device_ids=[comm.device.index] if comm.device.type == "cuda" else None)
        batch = max(1, p["batch_size"] // comm.world)
        steps = math.ceil(max(comm.sizes) / batch)
        first = last = math.nan
        for _ in range(p["epochs"]):
            for step in range(steps):
                start = min(step * batch, max(x["x"].shape[0] - batch, 0))
                ddp.zero_grad(set_to_none=True)
                loss = self._loss(ddp, x["x"][start:start + batch], x["y"][start:start + batch])
                loss.backward()
                with torch.no_grad():
                    for param in ddp.parameters():
                        param -= LEARNING_RATE * param.grad
                if step in (0, steps - 1):
                    last = float(comm.all_reduce(loss.detach().float().reshape(1))) / comm.world
                    first = last if math.isnan(first) else first
        return first, last

    def check_rank(self, x, result, p, dtype, comm) -> float:
        return self.check(x, result, {**p, "samples": comm.total}, dtype)

    def run_split(self, x, p, devices, data_on_host) -> Any:
        return self._train(x, p, devices)

    def check(self, x, result, p, dtype) -> float:
        first, last = result[:2]
        steps = p["epochs"] * -(-p["samples"] // p["batch_size"])
        if not last == last or (steps > 4 and not last < first * 1.05):
            raise KernelCheckError(f"{self.name}: loss went from {first:.4g} to {last:.4g}")
        return last


class TrainLinear(_Training):
    name = "train_linear"
    summary = "logistic regression by minibatch SGD (PyTorch)"
    params = {"samples": Param(), "features": Param(scales=False), "epochs": Param(default=1, scales=False),
              "batch_size": Param(default=256, scales=False)}

    def widths(self, p: dict[str, Any]) -> list[int]:
        return [p["features"], 1]


class TrainMlp(_Training):
    name = "train_mlp"
    summary = "MLP classifier by minibatch SGD (PyTorch)"
    params = {"samples": Param(), "features": Param(scales=False), "hidden": Param(kind="size_list"),
              "classes": Param(scales=False), "epochs": Param(default=1, scales=False),
              "batch_size": Param(default=256, scales=False)}

    def widths(self, p: dict[str, Any]) -> list[int]:
        return [p["features"], *p["hidden"], p["classes"]]


OPS = [Kmeans(), TrainLinear(), TrainMlp()]
