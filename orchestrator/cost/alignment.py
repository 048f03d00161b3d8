"""LAPACK's slow sizes. On this project's 2-core VM (MKL, as torch 2.13's CPU build ships it) a
Cholesky of n = 1024 took 11 ms where n = 1000 and n = 1040 took 2.8 and 3.1 ms: 3.6x the time
per FLOP. n = 512, 1536 and 2048 ran 2-2.8x slow; 640, 768, 896 and 1152 1.25-1.4x; a solve
1.9x at 1024; qr, svd, eigh and lstsq 1.05-1.3x at multiples of 512 (docs/cost-model.md, "op
scale"). A leading dimension that is a multiple of a large power of two maps a panel's columns
onto the same cache sets; how much that costs depends on the library and the CPU, so the
model cannot derive it and the profile measures it.

Each LAPACK op's CPU references sit at sizes that are multiples of none of the classes below (the
powers of two from 128 to 2048), and three more at sizes that are, in float32 and in float64.
What each of those measured over the op's scale read at its work is the penalty of its class
(`penalties`: the classes between measured ones read between them), and it multiplies the work
of every job of that class and dtype.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from orchestrator.ops import Op

ALIGNMENTS = (2048, 1024, 512, 256, 128)  # the classes, most aligned first: each power of two


def alignment(op: Op, params: dict[str, Any]) -> int:
    """The largest of ALIGNMENTS that divides the op's aligned size (0: none does, or the op's
    speed does not depend on it)."""
    size = op.aligned_size(params)
    if not size:
        return 0
    return next((a for a in ALIGNMENTS if size % a == 0), 0)


def penalties(ratios: dict[int, list[float]]) -> dict[int, float]:
    """Every class's penalty from what the measured classes' references ran slower than the op's
    scale: a measured class the median of its own, one between two measured classes read
    between them (log-linear in the class), one beyond them the nearest's. Classes were once
    two (multiples of 512, of 128), and a Cholesky of 1536 paid the median of 1024's 3.6x and
    1536's own 2.3-2.8x: predicted 1.10-1.29x its time in every held-out run, while 768 paid
    896's 1.3x and ran 1.15-1.5x that (docs/benchmarks.md, 2.10). Never below 1 nor below a less
    aligned class's (0.97-1.05 is what the classes of an op without a penalty measure here:
    noise, not a speed-up), so that growing a size by a whole factor, which never makes it less
    aligned, never predicts less time."""
    measured = {size: statistics.median(found) for size, found in ratios.items() if found}
    if not measured:
        return {}
    known = sorted(measured)
    found, floor = {}, 1.0
    for size in reversed(ALIGNMENTS):  # least aligned first
        below = [k for k in known if k < size]
        above = [k for k in known if k > size]
        if size in measured:
            value = measured[size]
        elif below and above:
            low, high = below[-1], above[0]
            share = math.log(size / low) / math.log(high / low)
            value = math.exp((1 - share) * math.log(measured[low]) + share * math.log(measured[high]))
        else:  # beyond the measured classes: the nearest's
            value = measured[below[-1] if below else above[0]]
        floor = found[size] = max(floor, value)
    return found


def split_references(kind: str, op: Op, benches: list[Any], float64: bool = False) -> tuple[list[Any], list[Any]]:
    """An op's references of one level (float64's, or every other dtype's), split into those
    its scale is read from and those that measure an alignment's penalty: on a CPU whose profile
    has references of both kinds; otherwise all make the scale (a profile from before the
    penalty was measured, a GPU's: cuSOLVER's was not measured)."""
    plain = [bench for bench in benches if (bench.dtype == "float64") == float64]
    aligned = [bench for bench in plain if kind.startswith("cpu") and alignment(op, bench.params)]
    unaligned = [bench for bench in plain if bench not in aligned]
    return (unaligned, aligned) if unaligned and aligned else (plain, [])


__all__ = ["ALIGNMENTS", "alignment", "penalties", "split_references"]
