"""Theoretical ceilings used to reject impossible measurements.

GPU ceilings come from the bundled reference profiles (datasheets, cited there), matched by the
NVML device name; PCIe ceilings from the PCI-SIG per-lane rates after line encoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator import paths
from orchestrator.profile.model import GpuProfile

# Bytes/s per lane and direction after encoding (PCI-SIG: 8b/10b for gen 1-2, 128b/130b from gen 3,
# PAM4 FLIT for gen 6).
PCIE_LANE_BYTES_PER_S = {1: 0.25e9, 2: 0.5e9, 3: 0.985e9, 4: 1.969e9, 5: 3.938e9, 6: 7.877e9}


@dataclass
class Ceilings:
    flops: dict[str, float] = field(default_factory=dict)
    memory_bandwidth: float | None = None
    h2d_bandwidth: float | None = None


def gpu_datasheet(name: str) -> GpuProfile | None:
    """The bundled reference GPU whose profile lists `name` among its `nvml_names`."""
    from orchestrator.profile.store import load_path

    for path in sorted(paths.bundled_profiles_dir().glob("*.yaml")):
        try:
            profile = load_path(path)
        except Exception:  # a broken bundled file must not break profiling  # noqa: BLE001
            continue
        if getattr(profile, "nvml_names", None) and name in profile.nvml_names and profile.gpus:
            return profile.gpus[0]
    return None


def gpu_ceilings(gpu: GpuProfile) -> Ceilings:
    ceilings = Ceilings()
    sheet = gpu_datasheet(gpu.name)
    if sheet is not None:
        ceilings.flops = dict(sheet.theoretical_peak_flops or sheet.peak_flops)
        ceilings.memory_bandwidth = sheet.memory_bandwidth
    if gpu.pcie and gpu.pcie.generation_max in PCIE_LANE_BYTES_PER_S and gpu.pcie.width_max:
        ceilings.h2d_bandwidth = PCIE_LANE_BYTES_PER_S[gpu.pcie.generation_max] * gpu.pcie.width_max
    return ceilings


def accept(value: float, ceiling: float | None, where: str, flags: list[str]) -> float | None:
    """`value`, or None with a flag when it exceeds the ceiling (a cache hit, a clock misread)."""
    if ceiling is not None and value > ceiling:
        flags.append(f"{where}: measured {value:.3g} exceeds the theoretical {ceiling:.3g}; not saved")
        return None
    return value
