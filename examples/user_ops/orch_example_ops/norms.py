"""RMSNorm, registered as `rmsnorm` in the `orch.ops` entry points. It declares its FLOPs and
memory traffic (float32, as this eager implementation moves it), so orch uses them rather than
counting."""

from __future__ import annotations

import torch

from orch_example_ops.common import randn, relative_error


class RMSNorm:
    """RMSNorm of each row: x / sqrt(mean(x^2) + eps) * weight"""

    params = {"rows": None, "cols": None}
    dtypes = ("float32", "bfloat16")
    eps = 1e-6

    def make_inputs(self, params, dtype, device, generator):
        x = randn((params["rows"], params["cols"]), dtype, device, generator)
        return {"x": x, "weight": randn((params["cols"],), dtype, device, generator)}

    def run(self, inputs, params):
        x = inputs["x"]
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * inputs["weight"]

    def check(self, inputs, result, params, dtype):
        x, w = inputs["x"].to("cpu", torch.float64), inputs["weight"].to("cpu", torch.float64)
        return relative_error(result, x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * w)

    def flops(self, params):
        return 4.0 * params["rows"] * params["cols"]  # square, sum, scale, weight

    def traffic_bytes(self, params):
        # eager float32 PyTorch: x^2 (read x, write), its mean (read), x * r (read x, write),
        # * weight (read, write): seven passes over rows x cols
        return 4.0 * 7 * params["rows"] * params["cols"]


rmsnorm = RMSNorm()
