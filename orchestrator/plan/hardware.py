"""From a profile (node or cluster) to the `Hardware` a plan is made for."""

from __future__ import annotations

from orchestrator.cost import calibration
from orchestrator.cost.history import History
from orchestrator.cost.model import Hardware
from orchestrator.errors import ProfileError
from orchestrator.profile import store
from orchestrator.profile.model import ClusterProfile, NodeProfile


def hardware_for(profile: NodeProfile | ClusterProfile, calibrated: bool = True) -> Hardware:
    """The hardware to plan for, with what was learned for this profile: the factors `orch
    calibrate` fitted and the timings recorded at each size (the history tier)."""
    learned = calibration.load(profile.name) if calibrated else None
    recorded = _history(profile.name) if calibrated else None
    if isinstance(profile, NodeProfile):
        return Hardware(profile.name, profile, 1, profile.network, learned, history=recorded)
    kinds = {node.profile for node in profile.nodes}
    if len(kinds) > 1:
        raise ProfileError(f"cluster {profile.name}: nodes: mixed node profiles ({', '.join(sorted(kinds))}) "
                           "are not supported yet; describe one node type per cluster")
    node = store.resolve(profile.nodes[0].profile)
    if not isinstance(node, NodeProfile):
        raise ProfileError(f"cluster {profile.name}: nodes[0].profile: '{profile.nodes[0].profile}' is a cluster, not a node")
    return Hardware(profile.name, node, sum(n.count for n in profile.nodes), profile.network, learned,
                    history=recorded)


def _history(profile: str) -> History | None:
    """The recorded timings of `profile`'s runs (those not marked to leave out), if any."""
    from orchestrator import paths
    from orchestrator.results.store import ResultStore

    if not (paths.orch_home() / "results.db").exists():
        return None
    with ResultStore(read_only=True) as store:
        rows, _ = store.jobs_for_profile(profile)
    return History.from_rows(rows) if rows else None
