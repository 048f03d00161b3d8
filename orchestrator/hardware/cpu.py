"""CPU and memory discovery through psutil and the OS (/proc, /sys), honouring cgroup limits."""

from __future__ import annotations

import math
import os
import platform
import re
from pathlib import Path

import psutil

from orchestrator.hardware.cgroup import read_limits
from orchestrator.profile.model import CgroupLimits, CpuProfile

# Flags worth naming for the cost model; /proc/cpuinfo spelling (x86) and Arm's.
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16",
              "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2", "bf16")


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as key → value."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def _cache_sizes(sys_cpu: Path = Path("/sys/devices/system/cpu")) -> dict[str, int]:
    """Per-instance cache sizes of cpu0 (l1d, l1i, l2) and the LLC (l3) in bytes."""
    sizes: dict[str, int] = {}
    for index in sorted((sys_cpu / "cpu0" / "cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            raw = (index / "size").read_text().strip()
        except OSError:
            continue
        match = re.fullmatch(r"(\d+)([KMG]?)", raw)
        if not match:
            continue
        size = int(match.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2)]
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        sizes[f"l{level}{suffix}"] = size
    return sizes


def _numa_nodes(sys_node: Path = Path("/sys/devices/system/node")) -> int:
    return max(1, len(list(sys_node.glob("node[0-9]*"))))


def _frequencies_hz(info: dict[str, str]) -> tuple[float | None, float | None]:
    """(base, max) clock. psutil's max is 0 in many VMs; the model name's '@ 2.30GHz' is base."""
    base = fmax = None
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError):
        freq = None
    if freq is not None:
        fmax = freq.max * 1e6 if freq.max else None
        base = freq.min * 1e6 if freq.min and freq.min != freq.max else None
    named = re.search(r"@\s*([\d.]+)\s*GHz", info.get("model name", ""))
    if named:
        base = float(named.group(1)) * 1e9
    if base is None and info.get("cpu MHz"):
        base = float(info["cpu MHz"]) * 1e6
    return base, fmax


def _flops_per_cycle_per_core(simd: list[str]) -> dict[str, int]:
    """Upper bound per core and cycle, assuming two FMA pipes (Intel/AMD optimisation manuals)."""
    if "avx512f" in simd:
        lanes64 = 8
    elif "avx2" in simd or "fma" in simd:
        lanes64 = 4
    elif "sve" in simd or "asimd" in simd:
        lanes64 = 4  # up to 4 × 128-bit NEON pipes on big Arm cores
    else:
        lanes64 = 2
    per = {"float64": 2 * 2 * lanes64, "float32": 2 * 2 * lanes64 * 2}
    # AMX: 1024 bf16 FMAs per cycle per core (Intel Sapphire Rapids AMX tile unit).
    per["bfloat16"] = 2048 if "amx_bf16" in simd else per["float32"] * 2
    return per


def theoretical_cpu_peaks(cores: int, frequency_hz: float | None, simd: list[str],
                          frequency_is_max: bool) -> dict[str, float]:
    """Peak FLOP/s bound for the measurement check; a 1.6× turbo allowance when only base clock is known."""
    if not frequency_hz:
        return {}
    clock = frequency_hz if frequency_is_max else frequency_hz * 1.6
    return {dtype: cores * clock * per
            for dtype, per in _flops_per_cycle_per_core(simd).items()}


def discover_cpu(cgroup: CgroupLimits | None = None) -> CpuProfile:
    """What this process may use: affinity ∩ cgroup quota for cores, cgroup limit for memory."""
    info = _cpuinfo()
    cgroup = cgroup if cgroup is not None else read_limits()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    simd = [flag for flag in SIMD_FLAGS if flag in flags]
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (psutil.cpu_count() or 1)
    if cgroup.cpu_quota_cores:
        logical = max(1, min(logical, math.ceil(cgroup.cpu_quota_cores)))
    physical_host = psutil.cpu_count(logical=False) or logical
    threads_per_core = max(1, (psutil.cpu_count(logical=True) or 1) // physical_host)
    physical = max(1, min(physical_host, logical // threads_per_core or 1))
    memory = psutil.virtual_memory()
    total = memory.total
    available = memory.available
    if cgroup.memory_limit_bytes and cgroup.memory_limit_bytes < total:
        total = cgroup.memory_limit_bytes
        available = min(available, total)
    base, fmax = _frequencies_hz(info)
    sockets = None
    if info.get("physical id") is not None:
        try:
            ids = {line.split(":")[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("physical id")}
            sockets = len(ids) or None
        except OSError:
            sockets = None
    return CpuProfile(
        model=info.get("model name") or platform.processor() or "unknown",
        vendor=info.get("vendor_id") or info.get("CPU implementer"),
        arch=platform.machine(),
        sockets=sockets,
        cores_physical=physical,
        cores_logical=logical,
        frequency_base_hz=base,
        frequency_max_hz=fmax,
        simd=simd,
        cache_bytes=_cache_sizes(),
        numa_nodes=_numa_nodes(),
        memory_total_bytes=total,
        memory_available_bytes=available,
        cgroup=cgroup,
        theoretical_peak_flops=theoretical_cpu_peaks(physical, fmax or base, simd, fmax is not None),
    )
