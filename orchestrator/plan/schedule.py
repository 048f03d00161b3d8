"""Heterogeneous list scheduling of a batch onto the devices of one or several nodes.

Jobs go longest first (LPT); each takes the earliest-free devices its placement needs: on a
GPU placement that many GPUs, on the CPU as many of the node's cores as the job runs threads
(`Option.cores`; None: all of them), so several one-thread jobs run side by side. With
`choose=True` a job may also take another feasible option when that finishes it earlier
(earliest-finish-time, as in HEFT: Topcuoglu et al., 2002), so a GPU is not handed a hundred jobs
while the CPUs idle.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import NamedTuple

from orchestrator.placement import Placement


class Option(NamedTuple):
    """One way to run a job: where, for how long, and on how many of a node's cores (a CPU
    placement; None: all of them)."""

    placement: Placement
    busy_s: float
    cores: int | None = None


@dataclass
class Slot:
    """One job's place in the batch: the option it took (its index among the job's options)."""

    placement: Placement
    devices: list[str]
    start_s: float
    finish_s: float
    option: int = 0


class Machines:
    """Free times of every device: per node its cores `cpu:0..` and GPUs `gpu0..` (each kept
    sorted, earliest free first)."""

    def __init__(self, nodes: int, gpus_per_node: int, cores_per_node: int = 1) -> None:
        self.nodes, self.cores = nodes, max(cores_per_node, 1)
        self.free: list[dict[str, list[tuple[float, str]]]] = [
            {"cpu": [(0.0, f"cpu:{i}") for i in range(self.cores)], "gpu": [(0.0, f"gpu{i}") for i in range(gpus_per_node)]}
            for _ in range(nodes)]

    def _name(self, node: int, device: str) -> str:
        return device if self.nodes == 1 else f"node{node}/{device}"

    def count(self, option: Option) -> int:
        if option.placement.device == "gpu":
            return option.placement.gpus
        return self.cores if option.cores is None else min(option.cores, self.cores)

    def _on_node(self, node: int, option: Option) -> tuple[float, list[str]]:
        chosen = self.free[node][option.placement.device][:self.count(option)]
        return chosen[-1][0], [name for _, name in chosen]

    def set_free(self, node: int, device: str, when: float) -> None:
        """`device`: one core (`cpu:i`), the whole CPU (`cpu`) or one GPU."""
        kind = "cpu" if device.startswith("cpu") else "gpu"
        hit = (lambda name: True) if device == "cpu" else (lambda name: name == device)
        self.free[node][kind] = sorted((when if hit(name) else free, name) for free, name in self.free[node][kind])

    def free_at(self, node: int, device: str) -> float:
        kind = "cpu" if device.startswith("cpu") else "gpu"
        return max(t for t, name in self.free[node][kind] if device == "cpu" or name == device)

    def earliest(self, option: Option) -> tuple[float, list[tuple[int, list[str]]]]:
        """When `option` can start, and on which node/devices."""
        if self.nodes == 1:
            start, devices = self._on_node(0, option)
            return start, [(0, devices)]
        options = heapq.nsmallest(option.placement.nodes, ((self._on_node(node, option), node) for node in range(self.nodes)))
        start = max(found[0][0] for found in options)
        return start, [(node, devices) for (_, devices), node in options]

    def book(self, option: Option, index: int = 0) -> Slot:
        start, where = self.earliest(option)
        for node, devices in where:
            for device in devices:
                self.set_free(node, device, start + option.busy_s)
        names = [self._name(node, device) for node, devices in where
                 for device in (["cpu"] if len(devices) == self.cores and devices[0].startswith("cpu") else devices)]
        return Slot(option.placement, names, start, start + option.busy_s, index)


Jobs = list[tuple[str, list[Option]]]


def list_schedule(jobs: Jobs, nodes: int, gpus_per_node: int, choose: bool, cores_per_node: int = 1) -> dict[str, Slot]:
    """`jobs`: (name, [Option or (placement, busy seconds[, cores]), ...] best first). Returns
    name -> Slot."""
    machines = Machines(nodes, gpus_per_node, cores_per_node)
    listed = [(name, [Option(*option) for option in options]) for name, options in jobs]
    order = sorted(listed, key=lambda job: -job[1][0].busy_s)
    slots: dict[str, Slot] = {}
    for name, options in order:
        index = 0
        if choose and len(options) > 1:
            best_finish = machines.earliest(options[0])[0] + options[0].busy_s
            for i in sorted(range(1, len(options)), key=lambda i: options[i].busy_s):
                if options[i].busy_s >= best_finish:
                    break  # starts no earlier than 0, so it cannot finish sooner
                finish = machines.earliest(options[i])[0] + options[i].busy_s
                fewer = machines.count(options[i]) < machines.count(options[index])
                if finish < best_finish or (finish == best_finish and fewer):
                    index, best_finish = i, finish
        slots[name] = machines.book(options[index], index)
    return slots


def makespan(slots: dict[str, Slot]) -> float:
    return max((slot.finish_s for slot in slots.values()), default=0.0)


def balance(jobs: Jobs, nodes: int, gpus_per_node: int, min_gain: float = 0.10, give_back: float = 0.05,
            cores_per_node: int = 1) -> dict[str, Slot]:
    """Each job at its own best, unless moving some elsewhere shortens the batch by `min_gain`.

    After the earliest-finish pass, a job that left its own best goes back (smallest first)
    while that lengthens the batch by at most `give_back`, so small jobs are not moved for
    nothing.
    """
    jobs = [(name, [Option(*option) for option in options]) for name, options in jobs]
    own = list_schedule(jobs, nodes, gpus_per_node, False, cores_per_node)
    spread = list_schedule(jobs, nodes, gpus_per_node, True, cores_per_node)
    # Earliest-finish is greedy: equal jobs a little slower on one core each all take every
    # core, one after the other. Each CPU job on its fewest cores is the other way to spread.
    narrow = _fixed(jobs, {name: _fewest(options, cores_per_node) for name, options in jobs}, nodes, gpus_per_node,
                    cores_per_node)
    spread = min((spread, narrow), key=makespan)
    bound = makespan(spread)
    if bound >= (1 - min_gain) * makespan(own):
        return own
    machines = Machines(nodes, gpus_per_node, cores_per_node)
    for slot in spread.values():
        for name in slot.devices:
            node, _, device = name.rpartition("/")
            index = int(node.removeprefix("node")) if node else 0
            machines.set_free(index, device, max(machines.free_at(index, device), slot.finish_s))
    choice = {name: spread[name].option for name, _ in jobs}
    options = dict(jobs)
    moved = sorted((name for name in choice if choice[name] != 0), key=lambda n: options[n][0].busy_s)
    for name in moved:
        start, _ = machines.earliest(options[name][0])
        if start + options[name][0].busy_s <= bound * (1 + give_back):
            machines.book(options[name][0])
            choice[name] = 0
    settled = _fixed(jobs, choice, nodes, gpus_per_node, cores_per_node)
    return settled if makespan(settled) <= bound * (1 + give_back) else spread


def _fewest(options: list[Option], cores_per_node: int) -> int:
    """The option of a job on the CPU with the fewest cores (the fastest of those); a job whose
    own best is a GPU keeps it."""
    if options[0].placement.device != "cpu":
        return 0
    on_cpu = [i for i, option in enumerate(options) if option.placement == options[0].placement]
    return min(on_cpu, key=lambda i: (options[i].cores or cores_per_node, options[i].busy_s))


def _fixed(jobs: Jobs, choice: dict[str, int], nodes: int, gpus_per_node: int, cores_per_node: int) -> dict[str, Slot]:
    """The batch with each job at its chosen option (`choice`: name -> its index)."""
    options = dict(jobs)
    slots = list_schedule([(name, [options[name][choice[name]]]) for name, _ in jobs], nodes, gpus_per_node, False,
                          cores_per_node)
    for name, slot in slots.items():
        slot.option = choice[name]
    return slots
