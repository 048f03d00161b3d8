"""What the cluster can serve, and the hardware a run is planned for on it: its GPUs per node
(stand-ins planned as the CPU), its hosts as nodes with the network between them, its workers'
threads; placements it cannot serve refused before anything runs (exit 3)."""

from __future__ import annotations

import dataclasses

from orchestrator import backends as backend_registry
from orchestrator.backends.base import Capacity, TLSFiles
from orchestrator.cost.model import Hardware
from orchestrator.errors import EnvironmentUnavailable
from orchestrator.placement import Placement


def fit_to_capacity(hw: Hardware, capacity: Capacity, notes: list[str], address: str | None = None) -> Hardware:
    """The hardware the cluster can really serve: at most its GPUs per node (stand-ins planned
    as the CPU where the profile has no GPU); on an existing cluster, CPU rates at its workers'
    share of the cores; as many nodes as it has worker hosts (Dask) or nodes (Ray), each like
    the profile's node, with the network measured for `address` (`orch profile --address`),
    else the profile's, else an assumed one."""
    from orchestrator.profile import network as networks

    node = hw.node
    serves = capacity.gpus_per_node
    if not hw.gpus and serves and capacity.stand_in_gpus:
        from orchestrator.hardware.standin import stand_in_gpus

        notes.append(f"the cluster's {serves} GPU(s) per node are CPU stand-ins (ORCH_FAKE_GPUS): planned as "
                     f"{hw.name}'s CPU")
        node = node.model_copy(update={"gpus": stand_in_gpus(node.cpu, serves)})
    elif len(hw.gpus) > serves:
        notes.append(f"profile {hw.name} has {len(hw.gpus)} GPU(s); the cluster serves {serves} per node: "
                     "planning without the others")
        node = node.model_copy(update={"gpus": hw.gpus[:serves]})
    if address is not None and capacity.cores_per_worker < node.cpu.cores_logical:
        node = node.model_copy(update={"cpu": node.cpu.share(capacity.cores_per_worker)})
        notes.append(f"the cluster's CPU workers have {capacity.cores_per_worker} thread(s) each of {hw.name}'s "
                     f"{hw.node.cpu.cores_logical} cores: CPU jobs planned at that share of its measured rates")
    nodes = capacity.nodes
    if hw.nodes > 1 and hw.nodes != nodes:
        notes.append(f"{hw.name} describes {hw.nodes} nodes; the cluster has {nodes}: planning for {nodes}")
    link = hw.network
    if nodes > 1:
        link = (networks.load(address) if address else None) or hw.network
        if link is None:
            link = networks.DEFAULT
            notes.append(f"the network between the cluster's {nodes} hosts is not measured: assuming "
                         f"{link.bandwidth / 1e9:.3g} GB/s and {link.latency_s * 1e6:.0f} µs "
                         f"(measure it with `orch profile --address {address}`)")
    # GPUs across nodes where every node has as many one-GPU workers as the plan gives a node
    gpus_everywhere = node.gpus and len(capacity.gpu_nodes(len(node.gpus))) >= nodes
    return dataclasses.replace(hw, node=node, nodes=nodes, network=link, spread=("cpu", "gpu") if gpus_everywhere else ("cpu",))


def discover(hw: Hardware, address: str, notes: list[str], tls: TLSFiles | None = None) -> Hardware:
    """The hardware of the Dask cluster at `address` (its worker hosts as nodes like `hw`'s),
    for `orch plan --address`; connects, looks, disconnects."""
    engine = backend_registry.get("dask", address, tls=tls)
    notes += engine.link_warnings()
    capacity = engine.start(cores=0, gpus=0)
    try:
        found = fit_to_capacity(hw, capacity, notes, address)
    finally:
        engine.close()
    notes.append(f"{address}: {capacity.cpu_workers} worker(s) on {capacity.nodes} host(s) "
                 f"({', '.join(capacity.hosts)}); each node planned as {hw.name}")
    return found


def refuse_impossible(forced: Placement | None, capacity: Capacity) -> None:
    if forced is None:
        return
    if forced.device == "gpu" and forced.nodes > 1:
        found = len(capacity.gpu_nodes(forced.gpus))
        if found < forced.nodes:
            raise EnvironmentUnavailable(f"--placement {forced}: needs {forced.gpus} GPU worker(s) on each of "
                                         f"{forced.nodes} hosts; the cluster has {found} such host(s)",
                                         fix="connect to a cluster with --address (`dask cuda worker` on each node)")
    elif forced.nodes > 1 and (forced.nodes > capacity.nodes or not capacity.hosts):
        raise EnvironmentUnavailable(f"--placement {forced}: needs workers on {forced.nodes} hosts; the cluster "
                                     f"has {capacity.nodes}", fix="connect to a cluster with --address")
    if forced.device == "gpu" and forced.gpus > capacity.gpus_per_node:
        have = capacity.gpus_per_node
        raise EnvironmentUnavailable(f"--placement {forced}: needs {forced.gpus} GPU(s) on one node; "
                                     f"the cluster has {have if have else 'no'} GPU" + ("s" if have != 1 else ""),
                                     fix="drop --placement, or run where GPUs are")


def gang(placement: Placement, capacity: Capacity) -> bool:
    """Whether a job holds several workers at once (gang.py): several nodes, or more GPUs than
    one worker has (one worker per GPU)."""
    return placement.nodes > 1 or (placement.device == "gpu" and placement.gpus > capacity.gpus_per_worker)

