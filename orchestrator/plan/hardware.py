"""From a profile (node or cluster) to the `Hardware` a plan is made for."""

from __future__ import annotations

from orchestrator.cost import calibration
from orchestrator.cost.model import Hardware
from orchestrator.errors import ProfileError
from orchestrator.profile import store
from orchestrator.profile.model import ClusterProfile, NodeProfile


def hardware_for(profile: NodeProfile | ClusterProfile, calibrated: bool = True) -> Hardware:
    """The hardware to plan for, with the factors `orch calibrate` learned for this profile."""
    learned = calibration.load(profile.name) if calibrated else None
    if isinstance(profile, NodeProfile):
        return Hardware(profile.name, profile, nodes=1, network=profile.network, calibration=learned)
    kinds = {node.profile for node in profile.nodes}
    if len(kinds) > 1:
        raise ProfileError(f"cluster {profile.name}: nodes: mixed node profiles ({', '.join(sorted(kinds))}) "
                           "are not supported yet; describe one node type per cluster")
    node = store.resolve(profile.nodes[0].profile)
    if not isinstance(node, NodeProfile):
        raise ProfileError(f"cluster {profile.name}: nodes[0].profile: '{profile.nodes[0].profile}' is a cluster, not a node")
    return Hardware(profile.name, node, nodes=sum(n.count for n in profile.nodes), network=profile.network,
                    calibration=learned)
