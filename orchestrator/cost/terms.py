"""The terms of a predicted time and how they make one (docs/cost-model.md):

    predicted = overhead + max(compute, memory, dispatch) + transfer + communication
"""

from __future__ import annotations

# dispatch_s: the launches a GPU overlaps with its work (0 on a CPU); see combine()
TERMS = ("overhead_s", "dispatch_s", "compute_s", "memory_s", "transfer_s", "communication_s")

# The terms an op's measured scale multiplies: its work, and the launches a GPU issues while it
# works (they overlap: `combine`). A small GPU job is often bound by its launches, and what its
# reference measured then is their real cost: a training step on an H100 VM took 1.4 ms where 17
# launches at the profiled per-op cost of a plain op (17.5 µs) say 0.3, so training jobs were
# predicted 3-5x fast until the scale covered the launches too.
WORK_TERMS = ("compute_s", "memory_s", "dispatch_s")


def work(terms: dict[str, float]) -> float:
    """The amount an op's scale is read at (and measured at): its largest work term."""
    return max(terms[term] for term in WORK_TERMS)


def combine(terms: dict[str, float]) -> float:
    """Predicted seconds from the terms: serial overhead, then the work (compute or memory,
    whichever binds) overlapped with the launches a GPU issues while it works, then transfers
    and communication."""
    return (terms["overhead_s"] + max(terms["compute_s"], terms["memory_s"], terms["dispatch_s"])
            + terms["transfer_s"] + terms["communication_s"])


def bound_of(terms: dict[str, float]) -> str:
    """The largest contribution: overhead, compute, memory, transfer or communication."""
    busy = max(terms["compute_s"], terms["memory_s"])
    shares = {"overhead": terms["overhead_s"] + max(terms["dispatch_s"] - busy, 0.0),
              "compute": terms["compute_s"], "memory": terms["memory_s"],
              "transfer": terms["transfer_s"], "communication": terms["communication_s"]}
    return max(shares, key=shares.get)


__all__ = ["TERMS", "WORK_TERMS", "bound_of", "combine", "work"]
