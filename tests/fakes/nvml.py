"""A fake NVML host: the subset of the `pynvml` module orch calls, over named scenarios.

Errors are the real `pynvml.NVMLError` classes, so code under test sees what the driver raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml

GiB = 1 << 30


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    memory_total: int = 80 * GiB
    memory_free: int = 79 * GiB
    capability: tuple[int, int] = (9, 0)
    sm_count: int = 132
    clock_sm_mhz: int = 1980
    clock_mem_mhz: int = 2619
    power_limit_mw: int = 700_000
    pcie: tuple[int, int, int, int] = (5, 5, 16, 16)  # gen current, gen max, width current, width max
    nvlink_links: int = 0
    nvlink_version: int = 4
    mig: bool = False
    fail_with: int | None = None  # an NVML_ERROR_* code every per-device query raises


@dataclass
class FakeHost:
    gpus: list[FakeGpu] = field(default_factory=list)
    driver: str = "560.35.03"
    cuda: int = 12060
    init_error: int | None = None


class FakeNvml:
    """Quacks like the `pynvml` module for one FakeHost."""

    NVMLError = pynvml.NVMLError
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_NVLINK_MAX_LINKS = 18
    NVML_FEATURE_ENABLED = 1
    NVML_ERROR_UNKNOWN = pynvml.NVML_ERROR_UNKNOWN

    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self.initialised = 0

    def _gpu(self, handle: FakeGpu) -> FakeGpu:
        if handle.fail_with is not None:
            raise pynvml.NVMLError(handle.fail_with)
        return handle

    def nvmlInit(self) -> None:
        if self.host.init_error is not None:
            raise pynvml.NVMLError(self.host.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.host.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.host.cuda

    def nvmlDeviceGetCount(self) -> int:
        return len(self.host.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.host.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.host.gpus[index]

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        return h.name  # names still answer on a failing GPU, as NVML's cached name does

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return h.uuid

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> SimpleNamespace:
        g = self._gpu(h)
        return SimpleNamespace(total=g.memory_total, free=g.memory_free, used=g.memory_total - g.memory_free)

    def nvmlDeviceGetCudaComputeCapability(self, h: FakeGpu) -> tuple[int, int]:
        return self._gpu(h).capability

    def nvmlDeviceGetAttributes(self, h: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(multiprocessorCount=self._gpu(h).sm_count)

    def nvmlDeviceGetMaxClockInfo(self, h: FakeGpu, clock: int) -> int:
        g = self._gpu(h)
        return g.clock_sm_mhz if clock == pynvml.NVML_CLOCK_SM else g.clock_mem_mhz

    def nvmlDeviceGetPowerManagementLimit(self, h: FakeGpu) -> int:
        return self._gpu(h).power_limit_mw

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: FakeGpu) -> int:
        return self._gpu(h).pcie[0]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: FakeGpu) -> int:
        return self._gpu(h).pcie[1]

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: FakeGpu) -> int:
        return self._gpu(h).pcie[2]

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: FakeGpu) -> int:
        return self._gpu(h).pcie[3]

    def nvmlDeviceGetNvLinkState(self, h: FakeGpu, link: int) -> int:
        g = self._gpu(h)
        if g.nvlink_links == 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if link >= self.NVML_NVLINK_MAX_LINKS:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return 1 if link < g.nvlink_links else 0

    def nvmlDeviceGetNvLinkVersion(self, h: FakeGpu, link: int) -> int:
        return self._gpu(h).nvlink_version

    def nvmlDeviceGetMigMode(self, h: FakeGpu) -> tuple[int, int]:
        g = self._gpu(h)
        return (int(g.mig), int(g.mig))


def _h100(i: int, **changes) -> FakeGpu:
    return FakeGpu(uuid=f"GPU-{i:08d}-aaaa-bbbb-cccc-{i:012d}", **changes)


SCENARIOS: dict[str, FakeHost | None] = {
    "no_library": None,  # pynvml cannot be imported
    "no_driver": FakeHost(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED),
    "zero_gpus": FakeHost(),
    "one_gpu": FakeHost(gpus=[_h100(0)]),
    "eight_gpus_nvlink": FakeHost(gpus=[_h100(i, nvlink_links=18) for i in range(8)]),
    "one_failing_gpu": FakeHost(gpus=[_h100(0), _h100(1, fail_with=pynvml.NVML_ERROR_GPU_IS_LOST), _h100(2)]),
    "mig_enabled": FakeHost(gpus=[_h100(0, mig=True)]),
}


def scenario(name: str) -> FakeNvml | None:
    host = SCENARIOS[name]
    return None if host is None else FakeNvml(host)
