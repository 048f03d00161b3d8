"""Container limits from cgroup v2 (`cpu.max`, `memory.max`) or v1 (CFS quota, memory limit)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.profile.model import CgroupLimits

# cgroup v1 reports "no limit" as a huge page-aligned number rather than "max".
_V1_UNLIMITED = 1 << 60


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_paths(proc_self_cgroup: Path) -> dict[str, str]:
    """controller → this process's cgroup path ('' for the v2 unified hierarchy)."""
    paths: dict[str, str] = {}
    for line in (_read(proc_self_cgroup) or "").splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path.lstrip("/")
    return paths


def _first(*candidates: Path) -> str | None:
    for candidate in candidates:
        text = _read(candidate)
        if text is not None:
            return text
    return None


def read_limits(root: Path = Path("/sys/fs/cgroup"),
                proc_self_cgroup: Path = Path("/proc/self/cgroup")) -> CgroupLimits:
    """The CPU quota (in cores) and memory limit (bytes) that apply to this process; None = none."""
    cpu_cores: float | None = None
    memory_bytes: int | None = None
    own = _own_paths(proc_self_cgroup)
    v2 = root / own.get("", "")
    cpu_max = _first(v2 / "cpu.max", root / "cpu.max")
    if cpu_max:
        quota, _, period = cpu_max.partition(" ")
        if quota != "max" and period:
            cpu_cores = int(quota) / int(period)
    mem_max = _first(v2 / "memory.max", root / "memory.max")
    if mem_max and mem_max != "max":
        memory_bytes = int(mem_max)
    if cpu_max is None:
        cpu_dir = root / "cpu" / own.get("cpu", "")
        quota = _first(cpu_dir / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_quota_us")
        period = _first(cpu_dir / "cpu.cfs_period_us", root / "cpu" / "cpu.cfs_period_us")
        if quota and period and int(quota) > 0:
            cpu_cores = int(quota) / int(period)
    if mem_max is None:
        mem_dir = root / "memory" / own.get("memory", "")
        limit = _first(mem_dir / "memory.limit_in_bytes", root / "memory" / "memory.limit_in_bytes")
        if limit and int(limit) < _V1_UNLIMITED:
            memory_bytes = int(limit)
    return CgroupLimits(cpu_quota_cores=cpu_cores, memory_limit_bytes=memory_bytes)
