"""Hardware profiles: the pydantic model, the store (saved and bundled), and rendering."""

from orchestrator.profile.model import ClusterProfile, CpuProfile, GpuProfile, NodeProfile

__all__ = ["ClusterProfile", "CpuProfile", "GpuProfile", "NodeProfile"]
