"""The `Placement` value type: where one job runs.

String forms (what `orch plan` prints and `orch run --placement` accepts):
`cpu` (all cores of one node), `gpu` (one GPU), `gpu:N` (N GPUs of one node),
`cpu@K` (the CPUs of K nodes), `gpu:N@K` (N GPUs on each of K nodes). `auto` lets the planner choose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FORM = re.compile(r"^(cpu|gpu)(?::(\d+))?(?:@(\d+))?$")
FORMS_HINT = "auto, cpu, gpu, gpu:N, cpu@K or gpu:N@K (K nodes)"


@dataclass(frozen=True, order=True)
class Placement:
    device: str  # "cpu" | "gpu"
    gpus: int = 0  # GPUs per node; 0 for cpu
    nodes: int = 1

    @classmethod
    def parse(cls, text: str) -> Placement:
        """Parse a placement string; ValueError with the accepted forms otherwise."""
        match = _FORM.match(str(text).strip())
        if not match:
            lowered = str(text).strip().lower()
            hint = f"; did you mean '{lowered}'?" if _FORM.match(lowered) else ""
            raise ValueError(f"not a placement; expected {FORMS_HINT}{hint}")
        device, count, nodes = match.group(1), match.group(2), match.group(3)
        if device == "cpu" and count is not None:
            raise ValueError("cpu takes no GPU count; use cpu or cpu@K")
        gpus = int(count) if count is not None else (1 if device == "gpu" else 0)
        node_count = int(nodes) if nodes is not None else 1
        if (device == "gpu" and gpus < 1) or node_count < 1:
            raise ValueError("GPU and node counts must be at least 1")
        return cls(device, gpus, node_count)

    @property
    def kind(self) -> str:
        """The capability this placement needs: cpu, gpu, multi_gpu or multi_node."""
        if self.nodes > 1:
            return "multi_node"
        if self.device == "gpu":
            return "gpu" if self.gpus == 1 else "multi_gpu"
        return "cpu"

    @property
    def devices(self) -> int:
        """How many devices share the work (cores of a node count as one device)."""
        return self.nodes * (self.gpus if self.device == "gpu" else 1)

    def __str__(self) -> str:
        base = "cpu" if self.device == "cpu" else ("gpu" if self.gpus == 1 else f"gpu:{self.gpus}")
        return base if self.nodes == 1 else f"{base}@{self.nodes}"
