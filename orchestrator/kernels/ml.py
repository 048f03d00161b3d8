"""k-means (Lloyd) and minibatch-SGD training in PyTorch; both data parallel across devices."""

from __future__ import annotations

from typing import Any

import torch

from orchestrator.kernels.base import Kernel, KernelCheckError, Tensors, normal

LEARNING_RATE = 0.05


class Kmeans(Kernel):
    op = "kmeans"
    splits = True

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        s, f, c = p["samples"], p["features"], p["clusters"]
        centers = 10 * normal((c, f), torch.float32, gen, torch.device("cpu"))
        labels = torch.randint(0, c, (s,), generator=gen)
        points = centers[labels] + normal((s, f), torch.float32, gen, torch.device("cpu"))
        return {"x": points.to(device=device, dtype=dtype), "init": points[:c].clone().to(device=device, dtype=dtype)}

    @staticmethod
    def _partials(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-cluster sums and counts of the points nearest each centroid, and the inertia."""
        distances = (x * x).sum(1, keepdim=True) - 2 * x @ centroids.T + (centroids * centroids).sum(1)
        nearest = distances.argmin(1)
        # the update as a second GEMM (one-hot^T x): far faster than a scatter-add on every device
        onehot = torch.nn.functional.one_hot(nearest, centroids.shape[0]).to(x.dtype)
        sums = onehot.T @ x
        counts = onehot.sum(0)
        inertia = distances.gather(1, nearest[:, None]).sum()
        return sums, counts, inertia

    def _lloyd(self, shards: list[torch.Tensor], init: torch.Tensor, iterations: int) -> tuple[torch.Tensor, float]:
        centroids = init.clone()
        inertia = torch.zeros((), device=init.device)
        for _ in range(iterations):
            partials = [self._partials(shard, centroids.to(shard.device)) for shard in shards]
            # the all-reduce: partial sums and counts meet on the first device
            sums = sum(part[0].to(init.device) for part in partials)
            counts = sum(part[1].to(init.device) for part in partials)
            inertia = sum(part[2].to(init.device) for part in partials)
            centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
        return centroids, float(inertia)

    def run(self, x: Tensors, p) -> Any:
        return self._lloyd([x["x"]], x["init"], p["iterations"])

    def run_split(self, x, p, devices, data_on_host) -> Any:
        shards = [part.to(d) for part, d in zip(x["x"].tensor_split(len(devices)), devices)]
        return self._lloyd(shards, x["init"].to(devices[0]), p["iterations"])

    def check(self, x, result, p, dtype) -> float:
        _, inertia = result
        start = float(self._partials(x["x"].float().cpu(), x["init"].float().cpu())[2])
        if not inertia <= start * 1.001:
            raise KernelCheckError(f"kmeans: inertia rose from {start:.4g} to {inertia:.4g}")
        return inertia / max(start, 1e-30)


class _Training(Kernel):
    splits = True

    def widths(self, p: dict[str, Any]) -> list[int]:
        raise NotImplementedError

    def make_inputs(self, p, dtype, gen, device) -> Tensors:
        widths = self.widths(p)
        features = normal((p["samples"], p["features"]), torch.float32, gen, torch.device("cpu"))
        teacher = normal((p["features"], widths[-1]), torch.float32, gen, torch.device("cpu"))
        scores = features @ teacher
        labels = (scores[:, 0] > 0).float() if widths[-1] == 1 else scores.argmax(1)
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

    def _train(self, x: Tensors, p, devices: list[torch.device]) -> tuple[float, float]:
        """Data parallel SGD: one replica per device, gradients averaged (all-reduced) each step."""
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
        return float(first), float(last)

    def run(self, x: Tensors, p) -> Any:
        return self._train(x, p, [x["x"].device])

    def run_split(self, x, p, devices, data_on_host) -> Any:
        return self._train(x, p, devices)

    def check(self, x, result, p, dtype) -> float:
        first, last = result
        steps = p["epochs"] * -(-p["samples"] // p["batch_size"])
        if not last == last or (steps > 4 and not last < first * 1.05):
            raise KernelCheckError(f"{self.op}: loss went from {first:.4g} to {last:.4g}")
        return last


class TrainLinear(_Training):
    op = "train_linear"

    def widths(self, p: dict[str, Any]) -> list[int]:
        return [p["features"], 1]


class TrainMlp(_Training):
    op = "train_mlp"

    def widths(self, p: dict[str, Any]) -> list[int]:
        return [p["features"], *p["hidden"], p["classes"]]


KERNELS = [Kmeans(), TrainLinear(), TrainMlp()]
