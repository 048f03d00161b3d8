"""The profile file (version 1). Units are in the key names; FLOP/s and bytes/s where unnamed.

`peak_flops.<dtype>` is the best measured GEMM throughput of a measured profile, or the
datasheet's dense peak of a reference profile; `gemm_flops.<dtype>` is the curve by square
size n (m = n = k) that the cost model interpolates. `efficiency.<figure>` is the fraction of a
datasheet figure that published measurements reach (1.0 where the profile measured it).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

PROFILE_VERSION = 1
DTYPES = ("float16", "bfloat16", "tfloat32", "float32", "float64")


class _Strict(BaseModel):
    # inf and NaN are refused: a rate of .inf made a plan of "makespan inf s" and JSON that
    # strict parsers reject
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        """Strings are printed to terminals: no control characters (an ANSI or OSC escape in a
        profile's name or model would reach the terminal raw)."""
        if _has_control(value):
            raise ValueError("must not contain control characters (escape sequences)")
        return value


def _has_control(value: Any) -> bool:
    if isinstance(value, str):
        return any(unicodedata.category(ch) == "Cc" for ch in value)
    if isinstance(value, dict):
        return any(_has_control(k) or _has_control(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_control(v) for v in value)
    return False


class LoopVsVector(_Strict):
    """The plain Python for-loop dot product against the vectorized one, same n."""

    n: PositiveInt
    loop_s: PositiveFloat
    vectorized_s: PositiveFloat
    speedup: PositiveFloat


class OpBenchmark(_Strict):
    """One op's real kernel timed once at a reference size (see hardware/bench_ops.py)."""

    params: dict[str, Any]
    dtype: str = "float32"
    data: str = "host"
    measured_s: PositiveFloat
    threads: int | None = None  # 1: timed on one thread (a CPU job may run faster so); None: all the cores
    shape: bool = False  # timed across tall shapes (cost/shapes.py), not for the op's scale


class Sentinel(_Strict):
    """The sentinel kernel's typical times on a device when it was profiled (execute/sentinel.py):
    the speed every recorded time is normalised to."""

    gemm_s: PositiveFloat
    copy_s: PositiveFloat


class CgroupLimits(_Strict):
    cpu_quota_cores: float | None = None
    memory_limit_bytes: int | None = None


class _Device(_Strict):
    peak_flops: dict[str, PositiveFloat] = Field(default_factory=dict)
    theoretical_peak_flops: dict[str, PositiveFloat] = Field(default_factory=dict)
    gemm_flops: dict[str, dict[PositiveInt, PositiveFloat]] = Field(default_factory=dict)
    memory_bandwidth: PositiveFloat | None = None
    efficiency: dict[str, float] = Field(default_factory=dict)
    # Fixed time a GEMM call exposes at small sizes (Hockney's n½ expressed as time): where no
    # measured curve exists, rate(W) = W / (W / achievable_peak + gemm_ramp_s).
    gemm_ramp_s: PositiveFloat | None = None
    # Bandwidth for working sets that fit in the last-level cache (half of it), bytes/s.
    cache_bandwidth: PositiveFloat | None = None
    # PyTorch's cost per eager op inside a training step (forward, backward, optimiser).
    torch_op_overhead_s: PositiveFloat | None = None
    # What DistributedDataParallel adds to each training step of a gang, besides the bytes
    # its all-reduce moves (the reducer, the bucket, the collective's call).
    ddp_step_s: PositiveFloat | None = None
    # Sorting, which compares rather than computes: seconds per element of torch.topk along
    # rows of SELECT_ROW elements, by k, and of a full sort of such rows.
    topk_s_per_element: dict[PositiveInt, PositiveFloat] = Field(default_factory=dict)
    sort_s_per_element: PositiveFloat | None = None
    # Softmax, whose exponentials no FLOP counter counts: seconds per element of torch.softmax
    # along rows of SOFTMAX_ROW elements (a softmax call's input, attention's scores).
    softmax_s_per_element: PositiveFloat | None = None
    sentinel: Sentinel | None = None
    op_benchmarks: dict[str, list[OpBenchmark]] = Field(default_factory=dict)
    power_w: PositiveFloat | None = None


# the measured rates of a CPU that grow with the cores used (GEMM curves, bandwidths)
PER_CORE = ("peak_flops", "gemm_flops", "memory_bandwidth", "cache_bandwidth", "memory_bandwidth_triad",
            "bandwidth_by_size")


class CpuProfile(_Device):
    model: str = "unknown"
    vendor: str | None = None
    arch: str | None = None
    sockets: PositiveInt | None = None
    cores_physical: PositiveInt
    cores_logical: PositiveInt
    frequency_base_hz: PositiveFloat | None = None
    frequency_max_hz: PositiveFloat | None = None
    simd: list[str] = Field(default_factory=list)
    cache_bytes: dict[str, int] = Field(default_factory=dict)
    numa_nodes: PositiveInt = 1
    memory_total_bytes: PositiveInt
    memory_available_bytes: int | None = None
    cgroup: CgroupLimits | None = None
    memory_bandwidth_triad: PositiveFloat | None = None
    # copy bandwidth (read + write) by working set bytes, from the caches to memory (measured)
    bandwidth_by_size: dict[PositiveInt, PositiveFloat] = Field(default_factory=dict)
    dispatch_overhead_s: PositiveFloat | None = None
    # One execution of the smallest torch kernel through orch's harness (one torch call, the
    # harness's own steps): what a catalog kernel's call, and each of a user op's eager calls,
    # costs on this CPU. NumPy's dispatch_overhead_s is far less, and no kernel calls NumPy.
    torch_call_s: PositiveFloat | None = None
    python_loop_s_per_element: PositiveFloat | None = None
    python_loop_dot: LoopVsVector | None = None

    def share(self, threads: int) -> CpuProfile:
        """This CPU as a worker of `threads` threads uses it: every rate that grows with cores
        at threads / cores of the measured one, each op's reference run that much longer (one
        thread of a 2-core host does half the GEMM work per second)."""
        share = min(max(threads, 1) / self.cores_logical, 1.0)
        data = self.model_dump()
        for name in PER_CORE:
            value = data.get(name)
            if isinstance(value, dict):
                data[name] = {k: ({n: rate * share for n, rate in v.items()} if isinstance(v, dict) else v * share)
                              for k, v in value.items()}
            elif value:
                data[name] = value * share
        data["op_benchmarks"] = {op: [{**bench, "measured_s": bench["measured_s"] / share} for bench in benches]
                                 for op, benches in data.get("op_benchmarks", {}).items()}
        data["cores_logical"] = max(1, min(threads, self.cores_logical))
        data["cores_physical"] = min(self.cores_physical, data["cores_logical"])
        return CpuProfile.model_validate(data)


class PcieLink(_Strict):
    generation_current: int | None = None
    generation_max: int | None = None
    width_current: int | None = None
    width_max: int | None = None


class GpuProfile(_Device):
    index: int
    name: str
    uuid: str | None = None
    stand_in: bool = False  # a CPU standing in for a GPU (ORCH_FAKE_GPUS, tests only)
    available: bool = True
    error: str | None = None
    memory_total_bytes: int | None = None
    memory_free_bytes: int | None = None
    compute_capability: str | None = None
    sm_count: int | None = None
    clock_sm_max_mhz: int | None = None
    clock_mem_max_mhz: int | None = None
    power_limit_w: float | None = None
    pcie: PcieLink | None = None
    nvlink_links: int = 0
    nvlink_bandwidth: PositiveFloat | None = None
    mig_mode: bool | None = None
    h2d_bandwidth: PositiveFloat | None = None
    h2d_bandwidth_pageable: PositiveFloat | None = None
    d2h_bandwidth: PositiveFloat | None = None
    d2h_bandwidth_pageable: PositiveFloat | None = None
    # Pageable copies by size ("h2d"/"d2h" -> bytes -> bytes/s): small ones run from the CPU's
    # caches and are faster than the large copy the scalars above are measured with.
    pageable_bandwidth: dict[Literal["h2d", "d2h"], dict[PositiveInt, PositiveFloat]] = Field(default_factory=dict)
    launch_latency_s: PositiveFloat | None = None
    transfer_latency_s: PositiveFloat | None = None
    p2p_bandwidth: PositiveFloat | None = None


class SystemInfo(_Strict):
    os: str | None = None
    python: str | None = None
    numpy: str | None = None
    torch: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpu_discovery_note: str | None = None


class Network(_Strict):
    """Between nodes: per-link bandwidth (bytes/s) and one-way latency."""

    bandwidth: PositiveFloat
    latency_s: PositiveFloat


# A profile's name names files in the store (its calibration): no separators, no leading dot.
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


def _profile_name(value: str) -> str:
    if not _PROFILE_NAME.match(value):
        raise ValueError("must be 1-200 letters, digits, '_', '.' or '-', starting with a letter or digit "
                         "(it names the profile's files in ORCH_HOME)")
    return value


ProfileName = Annotated[str, AfterValidator(_profile_name)]


class NodeProfile(_Strict):
    version: Literal[1] = PROFILE_VERSION
    kind: Literal["measured", "reference"] = "measured"
    name: ProfileName
    host: str | None = None
    created: str | None = None
    orch_version: str | None = None
    description: str | None = None
    quick: bool = False
    price_usd_per_hour: PositiveFloat | None = None
    power_idle_w: PositiveFloat | None = None
    nvml_names: list[str] = Field(default_factory=list)
    system: SystemInfo = Field(default_factory=SystemInfo)
    cpu: CpuProfile
    gpus: list[GpuProfile] = Field(default_factory=list)
    network: Network | None = None
    flags: list[str] = Field(default_factory=list)
    sources: dict[str, str] = Field(default_factory=dict)

    @property
    def usable_gpus(self) -> list[GpuProfile]:
        return [g for g in self.gpus if g.available]


class ClusterNode(_Strict):
    profile: str
    count: PositiveInt = 1


class ClusterProfile(_Strict):
    """Several nodes (node profiles × counts) and the network between them."""

    version: Literal[1] = PROFILE_VERSION
    kind: Literal["cluster"]
    name: ProfileName
    description: str | None = None
    nodes: list[ClusterNode] = Field(min_length=1)
    network: Network
    sources: dict[str, str] = Field(default_factory=dict)
