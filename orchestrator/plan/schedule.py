"""Heterogeneous list scheduling of a batch onto the devices of one or several nodes.

Jobs go longest first (LPT); each takes the earliest-free devices its placement needs. With
`choose=True` a job may also take another feasible placement when that finishes it earlier
(earliest-finish-time, as in HEFT: Topcuoglu et al., 2002), so a GPU is not handed a hundred jobs
while the CPUs idle.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from orchestrator.placement import Placement


@dataclass
class Slot:
    """One job's place in the batch."""

    placement: Placement
    devices: list[str]
    start_s: float
    finish_s: float


class Machines:
    """Free times of every device: per node a `cpu` and `gpu0..gpuN-1` (kept sorted)."""

    def __init__(self, nodes: int, gpus_per_node: int) -> None:
        self.nodes = nodes
        self.cpu = [0.0] * nodes
        self.gpus: list[list[tuple[float, str]]] = [[(0.0, f"gpu{i}") for i in range(gpus_per_node)]
                                                    for _ in range(nodes)]

    def _name(self, node: int, device: str) -> str:
        return device if self.nodes == 1 else f"node{node}/{device}"

    def _on_node(self, node: int, placement: Placement) -> tuple[float, list[str]]:
        if placement.device == "cpu":
            return self.cpu[node], ["cpu"]
        chosen = self.gpus[node][:placement.gpus]
        return chosen[-1][0], [name for _, name in chosen]

    def set_free(self, node: int, device: str, when: float) -> None:
        if device == "cpu":
            self.cpu[node] = when
            return
        others = [entry for entry in self.gpus[node] if entry[1] != device]
        self.gpus[node] = sorted([*others, (when, device)])

    def free_at(self, node: int, device: str) -> float:
        return self.cpu[node] if device == "cpu" else next(t for t, name in self.gpus[node] if name == device)

    def earliest(self, placement: Placement) -> tuple[float, list[tuple[int, list[str]]]]:
        """When `placement` can start, and on which node/devices."""
        if self.nodes == 1:
            start, devices = self._on_node(0, placement)
            return start, [(0, devices)]
        options = heapq.nsmallest(placement.nodes, ((self._on_node(node, placement), node) for node in range(self.nodes)))
        start = max(option[0][0] for option in options)
        return start, [(node, devices) for (_, devices), node in options]

    def book(self, placement: Placement, busy_s: float) -> Slot:
        start, where = self.earliest(placement)
        for node, devices in where:
            for device in devices:
                self.set_free(node, device, start + busy_s)
        names = [self._name(node, device) for node, devices in where for device in devices]
        return Slot(placement, names, start, start + busy_s)


def list_schedule(jobs: list[tuple[str, list[tuple[Placement, float]]]], nodes: int, gpus_per_node: int,
                  choose: bool) -> dict[str, Slot]:
    """`jobs`: (name, [(placement, busy seconds), ...] best first). Returns name -> Slot."""
    machines = Machines(nodes, gpus_per_node)
    order = sorted(jobs, key=lambda job: -job[1][0][1])
    slots: dict[str, Slot] = {}
    for name, options in order:
        if choose and len(options) > 1:
            placement, busy = options[0]
            best_finish = machines.earliest(placement)[0] + busy
            for option, option_busy in sorted(options[1:], key=lambda o: o[1]):
                if option_busy >= best_finish:
                    break  # starts no earlier than 0, so it cannot finish sooner
                finish = machines.earliest(option)[0] + option_busy
                if finish < best_finish:
                    placement, busy, best_finish = option, option_busy, finish
        else:
            placement, busy = options[0]
        slots[name] = machines.book(placement, busy)
    return slots


def makespan(slots: dict[str, Slot]) -> float:
    return max((slot.finish_s for slot in slots.values()), default=0.0)


def balance(jobs: list[tuple[str, list[tuple[Placement, float]]]], nodes: int, gpus_per_node: int,
            min_gain: float = 0.10, give_back: float = 0.05) -> dict[str, Slot]:
    """Each job at its own best, unless moving some elsewhere shortens the batch by `min_gain`.

    After the earliest-finish pass, a job that left its own best goes back (smallest first)
    while that lengthens the batch by at most `give_back`, so small jobs are not moved for
    nothing.
    """
    own = list_schedule(jobs, nodes, gpus_per_node, choose=False)
    spread = list_schedule(jobs, nodes, gpus_per_node, choose=True)
    bound = makespan(spread)
    if bound >= (1 - min_gain) * makespan(own):
        return own
    machines = Machines(nodes, gpus_per_node)
    for slot in spread.values():
        for name in slot.devices:
            node, _, device = name.rpartition("/")
            index = int(node.removeprefix("node")) if node else 0
            machines.set_free(index, device, max(machines.free_at(index, device), slot.finish_s))
    best = {name: options[0] for name, options in jobs}
    choice = {name: next(o for o in options if o[0] == spread[name].placement) for name, options in jobs}
    moved = sorted((name for name in best if choice[name] is not best[name]), key=lambda n: best[n][1])
    for name in moved:
        placement, busy = best[name]
        start, _ = machines.earliest(placement)
        if start + busy <= bound * (1 + give_back):
            machines.book(placement, busy)
            choice[name] = best[name]
    settled = list_schedule([(name, [choice[name]]) for name, _ in jobs], nodes, gpus_per_node, choose=False)
    return settled if makespan(settled) <= bound * (1 + give_back) else spread
