"""LAPACK's tall factorisations by shape. On this project's 2-core VM (MKL, as torch 2.13's CPU
build ships it) qr, svd and lstsq of m of about 2000-3000 rows and n <= 250 columns run 2-6x
slower on both cores than on one (lstsq of 2000 x 250 float32: 30 ms on both, 4.5 on one),
and not at m = 4000 or at n = 500, where both cores win: on both cores svd of 2000 x 250 and
of 3000 x 250 took 44 ms, of 4000 x 250 29 ms. Neither the op's scale, read by work, nor an
alignment's penalty (these sizes are multiples of no class) can say so, and the planner put
such jobs on both cores (docs/benchmarks.md, 2.16).

So the profile times each of these ops on a grid of tall shapes (`bench_ops.SHAPE_REFERENCE`),
on all the cores and on one thread, float32 and float64, and what each ran over the op's scale
at its work is its shape's factor (`factor`): read between grid points log-linearly in m and n,
fading to 1 over an octave beyond the grid (the op's own references sit there, and its scale
answers for them). A job pays its shape's factor on the thread count it runs on, and the
planner compares the two counts with it.
"""

from __future__ import annotations

import math
from typing import Any

# A grid point: (m, n, measured over the op's scale at its work)
Point = tuple[int, int, float]


def factor(points: list[Point], params: dict[str, Any]) -> float:
    """The factor of the shape `params` (m x n) from the grid's points: bilinear in log m and
    log n between the four around it, the nearest edge's beyond the grid faded by how far beyond
    it lies (1 an octave out, summed over both dimensions); 1 without a full grid around it."""
    if not points or "m" not in params or "n" not in params:
        return 1.0
    grid = {(m, n): ratio for m, n, ratio in points}
    ms, ns = sorted({m for m, _ in grid}), sorted({n for _, n in grid})
    m, n = float(params["m"]), float(params["n"])
    (m0, m1, tm), out_m = _bracket(ms, m)
    (n0, n1, tn), out_n = _bracket(ns, n)
    corners = [(m0, n0), (m1, n0), (m0, n1), (m1, n1)]
    if any(corner not in grid for corner in corners):
        return 1.0
    logs = [math.log(grid[corner]) for corner in corners]
    inside = (1 - tm) * (1 - tn) * logs[0] + tm * (1 - tn) * logs[1] + (1 - tm) * tn * logs[2] + tm * tn * logs[3]
    return math.exp(inside * max(0.0, 1.0 - out_m - out_n))


def _bracket(axis: list[int], value: float) -> tuple[tuple[int, int, float], float]:
    """(the grid values around `value` and its share of the way between them in log space), and
    how many octaves beyond the grid it lies (0 within it)."""
    if value <= axis[0]:
        return (axis[0], axis[0], 0.0), math.log2(axis[0] / value)
    if value >= axis[-1]:
        return (axis[-1], axis[-1], 0.0), math.log2(value / axis[-1])
    high = next(i for i, at in enumerate(axis) if at >= value)
    low, up = axis[high - 1], axis[high]
    return (low, up, math.log(value / low) / math.log(up / low)), 0.0


__all__ = ["Point", "factor"]
