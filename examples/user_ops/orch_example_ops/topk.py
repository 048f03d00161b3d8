"""The k largest values of every row, registered as `row_topk`. It has no floating-point
arithmetic at all: orch plans it by the bytes it reads and writes."""

from __future__ import annotations

import torch

from orch_example_ops.common import randn


class RowTopK:
    """the k largest values of every row (torch.topk), with their indices"""

    params = {"rows": None, "cols": None, "k": 8}
    dtypes = ("float32", "float64")

    def make_inputs(self, params, dtype, device, generator):
        return randn((params["rows"], params["cols"]), dtype, device, generator)

    def run(self, inputs, params):
        return torch.topk(inputs, params["k"], dim=1)

    def check(self, inputs, result, params, dtype):
        values = result[0].to("cpu", torch.float64)
        want = torch.topk(inputs.to("cpu", torch.float64), params["k"], dim=1).values
        return float((values - want).abs().max() / (want.abs().max() or 1.0))


row_topk = RowTopK()
