"""Measured curves read between their points: linear in log-log, flat beyond the ends."""

from __future__ import annotations

import bisect
import math


def log_interpolate(points: list[tuple[float, float]], x: float) -> float:
    """y at x between sorted (x, y) points, linear in log-log; flat beyond the first and last."""
    if x <= points[0][0]:
        return points[0][1]
    if x >= points[-1][0]:
        return points[-1][1]
    i = bisect.bisect_right([px for px, _ in points], x)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
    return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
