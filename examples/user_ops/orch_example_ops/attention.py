"""Scaled dot-product attention, named in a workload as
`op: "orch_example_ops.attention:attention"`. It declares no FLOPs: orch counts them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from orch_example_ops.common import randn, relative_error


class Attention:
    """scaled dot-product attention: softmax(Q K^T / sqrt(d)) V"""

    params = {"batch": 1, "heads": 8, "seq": None, "head_dim": 64}
    dtypes = ("float32", "float64")

    def make_inputs(self, params, dtype, device, generator):
        shape = (params["batch"], params["heads"], params["seq"], params["head_dim"])
        return tuple(randn(shape, dtype, device, generator) for _ in range(3))

    def run(self, inputs, params):
        q, k, v = inputs
        return F.scaled_dot_product_attention(q, k, v)

    def check(self, inputs, result, params, dtype):
        q, k, v = (t.to("cpu", torch.float64) for t in inputs)
        weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
        return relative_error(result, weights @ v)


attention = Attention()
