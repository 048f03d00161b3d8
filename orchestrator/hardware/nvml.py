"""Every NVML call of orch, behind one adapter (gpustat's `nvml.py` pattern).

`pynvml` (from the nvidia-ml-py package) is imported lazily. No library, no driver or no GPU
gives an empty list and a note; a GPU whose queries fail becomes a placeholder marked
unavailable with the error, and the others are still read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from orchestrator.profile.model import GpuProfile, PcieLink

# Per-direction bandwidth of one NVLink link by NVLink version (NVIDIA NVLink product pages:
# NVLink 2/3/4 carry 25 GB/s per direction per link; NVLink 5 carries 50 GB/s).
NVLINK_LINK_BYTES_PER_S = {2: 25e9, 3: 25e9, 4: 25e9, 5: 50e9}


class NvmlWarning(UserWarning):
    """An NVML query that failed for one device or one field."""


@dataclass
class GpuDiscovery:
    gpus: list[GpuProfile] = field(default_factory=list)
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    note: str | None = None


def load_pynvml() -> ModuleType:
    """The `pynvml` module; ImportError with an install hint when missing."""
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("NVML bindings not found: pip install nvidia-ml-py") from exc
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_indices(count: int, uuids: list[str | None], env: Mapping[str, str]) -> list[int]:
    """NVML indices in CUDA order under CUDA_VISIBLE_DEVICES (integers or UUID prefixes).

    Like the CUDA runtime, the list stops at the first entry that names no device.
    """
    spec = env.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return list(range(count))
    chosen: list[int] = []
    for entry in (part.strip() for part in spec.split(",")):
        if entry.lstrip("-").isdigit():
            index = int(entry)
            if not 0 <= index < count:
                break
        else:
            matches = [i for i, uuid in enumerate(uuids)
                       if uuid and entry and uuid.startswith(entry if entry.startswith("GPU-") else "GPU-" + entry)]
            if len(matches) != 1:
                break
            index = matches[0]
        if index in chosen:
            break
        chosen.append(index)
    return chosen


def visible_gpu_count(nvml: ModuleType | None = None, env: Mapping[str, str] | None = None) -> int:
    """How many NVIDIA GPUs CUDA_VISIBLE_DEVICES leaves visible; 0 without NVML or a driver.
    Cheap (no torch, no CUDA context): how orch's own process decides whether GPUs exist."""
    env = os.environ if env is None else env
    try:
        nvml = nvml or load_pynvml()
        nvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library, no driver: no GPU
        return 0
    try:
        count = nvml.nvmlDeviceGetCount()
        uuids = [_optional(lambda i=i: _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))), nvml)
                 for i in range(count)]
        return len(visible_indices(count, uuids, env))
    except Exception:  # noqa: BLE001 - a driver that answers init but not the count
        return 0
    finally:
        _optional(nvml.nvmlShutdown, nvml)


def _optional(call: Callable[[], Any], nvml: ModuleType) -> Any:
    """A field that some GPUs do not report (NOT_SUPPORTED) is None, not an error."""
    try:
        return call()
    except nvml.NVMLError:
        return None


def _nvlink(nvml: ModuleType, handle: Any) -> tuple[int, float | None]:
    links = 0
    bandwidth = 0.0
    for link in range(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18)):
        try:
            if nvml.nvmlDeviceGetNvLinkState(handle, link) != getattr(nvml, "NVML_FEATURE_ENABLED", 1):
                continue
        except nvml.NVMLError:
            break
        links += 1
        version = _optional(lambda: nvml.nvmlDeviceGetNvLinkVersion(handle, link), nvml)
        bandwidth += NVLINK_LINK_BYTES_PER_S.get(version or 4, 25e9)
    return links, (bandwidth or None)


def _read_gpu(nvml: ModuleType, handle: Any, index: int) -> GpuProfile:
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    attributes = _optional(lambda: nvml.nvmlDeviceGetAttributes(handle), nvml)
    power_mw = _optional(lambda: nvml.nvmlDeviceGetPowerManagementLimit(handle), nvml)
    mig = _optional(lambda: nvml.nvmlDeviceGetMigMode(handle), nvml)
    links, link_bandwidth = _nvlink(nvml, handle)
    return GpuProfile(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        memory_total_bytes=int(memory.total),
        memory_free_bytes=int(memory.free),
        compute_capability=f"{major}.{minor}",
        sm_count=getattr(attributes, "multiprocessorCount", None),
        clock_sm_max_mhz=_optional(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM), nvml),
        clock_mem_max_mhz=_optional(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM), nvml),
        power_limit_w=power_mw / 1000 if power_mw else None,
        pcie=PcieLink(
            generation_current=_optional(lambda: nvml.nvmlDeviceGetCurrPcieLinkGeneration(handle), nvml),
            generation_max=_optional(lambda: nvml.nvmlDeviceGetMaxPcieLinkGeneration(handle), nvml),
            width_current=_optional(lambda: nvml.nvmlDeviceGetCurrPcieLinkWidth(handle), nvml),
            width_max=_optional(lambda: nvml.nvmlDeviceGetMaxPcieLinkWidth(handle), nvml),
        ),
        nvlink_links=links,
        nvlink_bandwidth=link_bandwidth,
        mig_mode=bool(mig[0]) if mig else None,
        power_w=power_mw / 1000 if power_mw else None,
    )


def discover_gpus(nvml: ModuleType | None = None, env: Mapping[str, str] | None = None) -> GpuDiscovery:
    """The visible GPUs; never raises for a missing library, driver or device."""
    env = os.environ if env is None else env
    if nvml is None:
        try:
            nvml = load_pynvml()
        except ImportError as exc:
            return GpuDiscovery(note=str(exc))
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return GpuDiscovery(note=f"NVML unavailable ({type(exc).__name__}: {exc}): no NVIDIA driver or GPU")
    try:
        result = GpuDiscovery(
            driver_version=_optional(lambda: _text(nvml.nvmlSystemGetDriverVersion()), nvml))
        cuda = _optional(nvml.nvmlSystemGetCudaDriverVersion, nvml)
        if cuda:
            result.cuda_driver_version = f"{cuda // 1000}.{cuda % 1000 // 10}"
        count = nvml.nvmlDeviceGetCount()
        handles: list[Any] = []
        uuids: list[str | None] = []
        for i in range(count):
            handle = _optional(lambda: nvml.nvmlDeviceGetHandleByIndex(i), nvml)
            handles.append(handle)
            uuids.append(_optional(lambda: _text(nvml.nvmlDeviceGetUUID(handle)), nvml) if handle else None)
        for cuda_index, nvml_index in enumerate(visible_indices(count, uuids, env)):
            result.gpus.append(_one_gpu(nvml, handles[nvml_index], cuda_index, uuids[nvml_index]))
        if not result.gpus:
            result.note = ("no GPU visible (CUDA_VISIBLE_DEVICES hides them)" if count
                           else "NVML found no GPU")
        return result
    finally:
        _optional(nvml.nvmlShutdown, nvml)


def _one_gpu(nvml: ModuleType, handle: Any, index: int, uuid: str | None) -> GpuProfile:
    try:
        if handle is None:
            raise nvml.NVMLError(getattr(nvml, "NVML_ERROR_UNKNOWN", 999))
        return _read_gpu(nvml, handle, index)
    except nvml.NVMLError as exc:
        name = _optional(lambda: _text(nvml.nvmlDeviceGetName(handle)), nvml) if handle else None
        return GpuProfile(index=index, name=name or "unknown", uuid=uuid, available=False,
                          error=f"{type(exc).__name__}: {exc}")
