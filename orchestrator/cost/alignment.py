"""LAPACK's slow sizes. On this project's 2-core VM (MKL, as torch 2.13's CPU build ships it) a
Cholesky of n = 1024 took 11 ms where n = 1000 and n = 1040 took 2.8 and 3.1 ms: 3.6x the time
per FLOP. n = 512, 1536 and 2048 ran 2-2.8x slow; 640, 768, 896 and 1152 1.25-1.4x; a solve
1.9x at 1024; qr, svd, eigh and lstsq 1.05-1.3x at multiples of 512 (docs/cost-model.md, "op
scale"). A leading dimension that is a multiple of a large power of two maps a panel's columns
onto the same cache sets; how much that costs depends on the library and the CPU, so the
model cannot derive it and the profile measures it.

Each LAPACK op's CPU references sit at sizes that are multiples of none of the classes below (the
powers of two from 128 to 2048), and a few more for each of its aligned dimensions (n of a
square op; the panel width n and the leading dimension m of a tall one) at sizes where that
dimension is aligned and the others are not: in float32 and float64 on all the cores, in float32
on one thread (`bench_ops.ALIGNED_REFERENCE`). What
each of those measured over the op's scale read at its work is the penalty of its dimension's
class (`penalties`: the classes between measured ones read between them). A job pays each of its
dimensions' penalties, multiplied: on one thread of this VM lstsq of 4096 x 256 took 2.1x the
time of 4000 x 250, where the leading dimension alone cost 1.36x and the panel width 1.77x (the
product, 2.4, over-states it by 15%; the larger alone under-states it by as much).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from orchestrator.ops import Op

ALIGNMENTS = (2048, 1024, 512, 256, 128)  # the classes, most aligned first: each power of two


def classes(op: Op, params: dict[str, Any]) -> dict[str, int]:
    """Each aligned dimension's class: the largest of ALIGNMENTS that divides it (0: none does)."""
    return {dim: next((a for a in ALIGNMENTS if size % a == 0), 0) for dim, size in op.aligned_sizes(params).items()}


def alignment(op: Op, params: dict[str, Any]) -> int:
    """The class of the op's most aligned dimension (0: none is aligned, or its speed does not
    depend on alignment)."""
    return max(classes(op, params).values(), default=0)


def measured_penalties(points: list[tuple[dict[str, int], float]]) -> dict[str, dict[int, float]]:
    """Each dimension's `penalties` from (classes, how much slower than the op's scale) of
    aligned references; a reference aligned in more than one dimension measures no one
    dimension's (a profile's from before they were split)."""
    ratios: dict[str, dict[int, list[float]]] = {}
    for found, ratio in points:
        aligned = {dim: size for dim, size in found.items() if size}
        if len(aligned) == 1:
            [(dim, size)] = aligned.items()
            ratios.setdefault(dim, {}).setdefault(size, []).append(ratio)
    return {dim: penalties(by_class) for dim, by_class in ratios.items()}


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
    found, floor = {}, 1.0
    for size in reversed(ALIGNMENTS):  # least aligned first
        low, high = _around(measured, size)
        if size in measured:
            value = measured[size]
        elif low and high:
            share = math.log(size / low) / math.log(high / low)
            value = math.exp((1 - share) * math.log(measured[low]) + share * math.log(measured[high]))
        else:  # beyond the measured classes: the nearest's
            value = measured[low or high]
        floor = found[size] = max(floor, value)
    return found


def _around(measured: dict[int, Any], size: int) -> tuple[int | None, int | None]:
    """The nearest measured classes below and above `size` (None where there is none)."""
    return max((k for k in measured if k < size), default=None), min((k for k in measured if k > size), default=None)


def measured_at(op: Op, benches: list[Any]) -> dict[str, dict[int, float]]:
    """Each dimension's size at which each class's penalty was measured: the median size of its
    own references (aligned in that dimension alone); a class read between two measured ones the
    larger of theirs, one beyond them the nearest's (`faded`)."""
    sizes: dict[str, dict[int, list[int]]] = {}
    for bench in benches:
        aligned = {dim: size for dim, size in classes(op, bench.params).items() if size}
        if len(aligned) == 1:
            [(dim, size)] = aligned.items()
            sizes.setdefault(dim, {}).setdefault(size, []).append(op.aligned_sizes(bench.params)[dim])
    found: dict[str, dict[int, float]] = {}
    for dim, by_class in sizes.items():
        known = {size: statistics.median(at) for size, at in by_class.items()}
        found[dim] = {}
        for size in ALIGNMENTS:
            low, high = _around(known, size)
            found[dim][size] = known.get(size) or (max(known[low], known[high]) if low and high else known[low or high])
    return found


def faded(penalty: float, at: float | None, size: int) -> float:
    """A square factorisation's penalty at `size`, measured at `at`: beyond it the part that pays
    it (the panels, n^2 x the block width) shrinks against the whole (n^3) as 1/n. On this VM's
    MKL a Cholesky of 1024 ran 3.65x its neighbours' time per FLOP and one of 3072 (the same
    class) 2.1x (faded from 1024: 1.9x); 2048 2.74x and 4096 1.95x (faded: 1.87x); a solve of
    1024 1.73x, 2048 1.18x (faded 1.37x), 4096 1.0x; eigh of 1024 1.17x, 2048 1.06x. Tall ones do
    not fade so (qr's panel width cost 1.04x at 1000 x 256, 1.14x at 4000 x 256) and keep theirs."""
    return penalty if not at or size <= at else 1.0 + (penalty - 1.0) * at / size


def split_references(kind: str, op: Op, benches: list[Any], float64: bool = False) -> tuple[list[Any], list[Any]]:
    """An op's references of one level (float64's, or every other dtype's), split into those
    its scale is read from and those that measure an alignment's penalty: on a CPU whose profile
    has references of both kinds; otherwise all make the scale (a profile from before the
    penalty was measured, a GPU's: cuSOLVER's was not measured)."""
    plain = [bench for bench in benches if (bench.dtype == "float64") == float64]
    aligned = [bench for bench in plain if kind.startswith("cpu") and alignment(op, bench.params)]
    unaligned = [bench for bench in plain if bench not in aligned]
    return (unaligned, aligned) if unaligned and aligned else (plain, [])


__all__ = ["ALIGNMENTS", "alignment", "classes", "faded", "measured_at", "measured_penalties", "penalties",
           "split_references"]
