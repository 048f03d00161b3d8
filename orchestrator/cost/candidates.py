"""Where a job could run on some hardware: every placement the cost model prices."""

from __future__ import annotations

from orchestrator.cost.model import Hardware
from orchestrator.placement import Placement


def candidates(hw: Hardware) -> list[Placement]:
    """Every placement the hardware offers: cpu, gpu, gpu:N (powers of two and all), and the
    multi-node forms cpu@K and gpu:N@K."""
    found = [Placement("cpu")]
    gpu_count = len(hw.gpus)
    counts = sorted({c for c in (1, 2, 4, 8, 16) if c <= gpu_count} | ({gpu_count} if gpu_count else set()))
    found += [Placement("gpu", c) for c in counts]
    node_counts = sorted({k for k in (2, 4, 8, 16, 32, 64) if k <= hw.nodes} | ({hw.nodes} if hw.nodes > 1 else set()))
    for k in node_counts:
        if "cpu" in hw.spread:
            found.append(Placement("cpu", 0, k))
        if gpu_count and "gpu" in hw.spread:
            found.append(Placement("gpu", gpu_count, k))
    return found
