from __future__ import annotations

from pathlib import Path

import psutil

from orchestrator.hardware.cgroup import read_limits
from orchestrator.hardware.cpu import discover_cpu, theoretical_cpu_peaks
from orchestrator.profile.model import CgroupLimits


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limits(tmp_path):
    _write(tmp_path / "proc", "0::/job/42\n")
    _write(tmp_path / "cg/job/42/cpu.max", "150000 100000\n")
    _write(tmp_path / "cg/job/42/memory.max", "4294967296\n")
    limits = read_limits(tmp_path / "cg", tmp_path / "proc")
    assert limits.cpu_quota_cores == 1.5
    assert limits.memory_limit_bytes == 4 << 30


def test_cgroup_v2_unlimited(tmp_path):
    _write(tmp_path / "proc", "0::/\n")
    _write(tmp_path / "cg/cpu.max", "max 100000\n")
    _write(tmp_path / "cg/memory.max", "max\n")
    assert read_limits(tmp_path / "cg", tmp_path / "proc") == CgroupLimits()


def test_cgroup_v1_limits_follow_own_path(tmp_path):
    _write(tmp_path / "proc", "4:memory:/box\n1:cpu:/box\n")
    _write(tmp_path / "cg/cpu/box/cpu.cfs_quota_us", "200000\n")
    _write(tmp_path / "cg/cpu/box/cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "cg/memory/box/memory.limit_in_bytes", "1073741824\n")
    limits = read_limits(tmp_path / "cg", tmp_path / "proc")
    assert limits.cpu_quota_cores == 2.0
    assert limits.memory_limit_bytes == 1 << 30


def test_cgroup_v1_unlimited_sentinel(tmp_path):
    _write(tmp_path / "proc", "4:memory:/\n")
    _write(tmp_path / "cg/cpu/cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cg/cpu/cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "cg/memory/memory.limit_in_bytes", "9223372036854771712\n")
    assert read_limits(tmp_path / "cg", tmp_path / "proc") == CgroupLimits()


def test_discovery_matches_the_os():
    cpu = discover_cpu(CgroupLimits())
    assert cpu.cores_logical == len(__import__("os").sched_getaffinity(0))
    assert cpu.memory_total_bytes == psutil.virtual_memory().total
    assert cpu.cores_physical <= cpu.cores_logical


def test_discovery_honours_container_limits():
    cpu = discover_cpu(CgroupLimits(cpu_quota_cores=0.5, memory_limit_bytes=1 << 30))
    assert cpu.cores_logical == 1
    assert cpu.memory_total_bytes == 1 << 30
    assert cpu.memory_available_bytes <= 1 << 30


def test_theoretical_peak_scales_with_simd_and_turbo_allowance():
    avx512 = theoretical_cpu_peaks(4, 2e9, ["avx2", "avx512f"], frequency_is_max=True)
    avx2 = theoretical_cpu_peaks(4, 2e9, ["avx2"], frequency_is_max=True)
    assert avx512["float64"] == 4 * 2e9 * 32 and avx2["float64"] == 4 * 2e9 * 16
    base_only = theoretical_cpu_peaks(4, 2e9, ["avx2"], frequency_is_max=False)
    assert base_only["float32"] > avx2["float32"]
    assert theoretical_cpu_peaks(4, None, ["avx2"], frequency_is_max=False) == {}
