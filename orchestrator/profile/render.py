"""Print a profile as a rich table, JSON or YAML."""

from __future__ import annotations

import json

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.profile.model import ClusterProfile, CpuProfile, GpuProfile, NodeProfile
from orchestrator.profile.store import AnyProfile, to_data
from orchestrator.units import seconds, si


def as_json(profile: AnyProfile) -> str:
    return json.dumps(to_data(profile), indent=2)


def as_yaml(profile: AnyProfile) -> str:
    return yaml.safe_dump(to_data(profile), sort_keys=False)


def _flops(device: CpuProfile | GpuProfile) -> str:
    return ", ".join(f"{dtype} {si(value, 'FLOP/s')}" for dtype, value in device.peak_flops.items()) or "-"


def _curve(device: CpuProfile | GpuProfile) -> list[tuple[str, str]]:
    return [(f"gemm {dtype}", "  ".join(f"n={n}: {si(v, 'FLOP/s')}" for n, v in sorted(curve.items())))
            for dtype, curve in device.gemm_flops.items()]


def _op_rows(device: CpuProfile | GpuProfile) -> list[tuple[str, str]]:
    if not device.op_benchmarks:
        return []
    rows = []
    for label, float64 in (("op kernels", False), ("op kernels float64", True)):
        mine = {op: [b for b in benches if (b.dtype == "float64") == float64 and not b.shape]
                for op, benches in device.op_benchmarks.items()}
        timed = "  ".join(f"{op} {'/'.join(seconds(b.measured_s) for b in found)}" for op, found in mine.items() if found)
        if timed:
            rows.append((label, timed))
    shaped = {op: len(found) for op, benches in device.op_benchmarks.items() if (found := [b for b in benches if b.shape])}
    if shaped:
        rows.append(("op kernels by shape", "  ".join(f"{op} {count} timed" for op, count in shaped.items())))
    return rows


def _cpu_rows(cpu: CpuProfile) -> list[tuple[str, str]]:
    rows = [
        ("model", cpu.model),
        ("cores", f"{cpu.cores_physical} physical, {cpu.cores_logical} logical"),
        ("clock", f"base {si(cpu.frequency_base_hz, 'Hz')}, max {si(cpu.frequency_max_hz, 'Hz')}"),
        ("simd", " ".join(cpu.simd) or "-"),
        ("caches", "  ".join(f"{k} {si(v, 'B', binary=True)}" for k, v in cpu.cache_bytes.items()) or "-"),
        ("numa nodes", str(cpu.numa_nodes)),
        ("memory", f"{si(cpu.memory_total_bytes, 'B', binary=True)} total, "
                   f"{si(cpu.memory_available_bytes, 'B', binary=True)} available"),
        ("peak FLOP/s", _flops(cpu)),
        *_curve(cpu),
        ("memory bandwidth", f"copy {si(cpu.memory_bandwidth, 'B/s')}, triad {si(cpu.memory_bandwidth_triad, 'B/s')}"),
        ("cache bandwidth", si(cpu.cache_bandwidth, "B/s")),
        *([("bandwidth by working set", "  ".join(f"{si(size, 'B', binary=True)} {si(rate, 'B/s')}"
                                                  for size, rate in sorted(cpu.bandwidth_by_size.items())))]
          if cpu.bandwidth_by_size else []),
        ("dispatch overhead", f"numpy {seconds(cpu.dispatch_overhead_s)}, torch call {seconds(cpu.torch_call_s)}, "
                              f"training op {seconds(cpu.torch_op_overhead_s)}"),
        *_selection_rows(cpu),
        *_op_rows(cpu),
    ]
    if cpu.cgroup and (cpu.cgroup.cpu_quota_cores or cpu.cgroup.memory_limit_bytes):
        rows.append(("cgroup limits", f"cpu {cpu.cgroup.cpu_quota_cores or '-'} cores, "
                                      f"memory {si(cpu.cgroup.memory_limit_bytes, 'B', binary=True)}"))
    if cpu.python_loop_dot:
        loop = cpu.python_loop_dot
        rows.append(("python loop vs numpy dot",
                     f"n={loop.n}: {seconds(loop.loop_s)} vs {seconds(loop.vectorized_s)} ({loop.speedup:.0f}x)"))
    return rows


def _selection_rows(device: CpuProfile | GpuProfile) -> list[tuple[str, str]]:
    if not device.topk_s_per_element:
        return []
    topk = ", ".join(f"k={k} {seconds(s)}" for k, s in sorted(device.topk_s_per_element.items()))
    return [("top-k, sort / element", f"{topk}; sort {seconds(device.sort_s_per_element)}")]


def _gpu_rows(gpu: GpuProfile) -> list[tuple[str, str]]:
    if not gpu.available:
        return [("status", f"unavailable: {gpu.error}")]
    pcie = gpu.pcie
    rows = [
        ("uuid", gpu.uuid or "-"),
        ("memory", f"{si(gpu.memory_total_bytes, 'B', binary=True)} total, {si(gpu.memory_free_bytes, 'B', binary=True)} free"),
        ("compute capability", f"{gpu.compute_capability or '-'}, {gpu.sm_count or '-'} SMs"),
        ("clocks", f"sm {gpu.clock_sm_max_mhz or '-'} MHz, memory {gpu.clock_mem_max_mhz or '-'} MHz"),
        ("power limit", si(gpu.power_limit_w, "W")),
        ("pcie", f"gen {pcie.generation_current}/{pcie.generation_max} x{pcie.width_current}/{pcie.width_max}" if pcie else "-"),
        ("nvlink", f"{gpu.nvlink_links} links, {si(gpu.nvlink_bandwidth, 'B/s')}"),
        ("mig", {True: "enabled", False: "disabled", None: "-"}[gpu.mig_mode]),
        ("peak FLOP/s", _flops(gpu)),
        *_curve(gpu),
        ("memory bandwidth", si(gpu.memory_bandwidth, "B/s")),
        ("host->device", f"pinned {si(gpu.h2d_bandwidth, 'B/s')}, pageable {si(gpu.h2d_bandwidth_pageable, 'B/s')}"),
        ("device->host", f"pinned {si(gpu.d2h_bandwidth, 'B/s')}, pageable {si(gpu.d2h_bandwidth_pageable, 'B/s')}"),
        ("launch latency", seconds(gpu.launch_latency_s)),
        *_selection_rows(gpu),
        *_op_rows(gpu),
    ]
    if gpu.p2p_bandwidth:
        rows.append(("gpu<->gpu", si(gpu.p2p_bandwidth, "B/s")))
    if gpu.efficiency:
        rows.append(("achievable", "  ".join(f"{k} {v:.0%}" for k, v in gpu.efficiency.items())))
    return rows


def print_table(profile: AnyProfile, console: Console) -> None:
    if isinstance(profile, ClusterProfile):
        table = Table(title=f"cluster {profile.name}", show_header=True)
        table.add_column("node profile")
        table.add_column("count", justify="right")
        for node in profile.nodes:
            table.add_row(node.profile, str(node.count))
        console.print(table)
        console.print(f"network: {si(profile.network.bandwidth, 'B/s')} per link, "
                      f"latency {seconds(profile.network.latency_s)}")
        return
    assert isinstance(profile, NodeProfile)
    title = f"{profile.name} ({profile.kind}{', quick' if profile.quick else ''})"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row(Text("CPU", style="cyan"), "")
    for key, value in _cpu_rows(profile.cpu):
        table.add_row(key, value)
    for gpu in profile.gpus:
        table.add_row(Text(f"GPU {gpu.index}", style="cyan"), gpu.name)
        for key, value in _gpu_rows(gpu):
            table.add_row(key, value)
    if not profile.gpus:
        table.add_row(Text("GPUs", style="cyan"), "none" + (f" ({profile.system.gpu_discovery_note})"
                                                       if profile.system.gpu_discovery_note else ""))
    if profile.price_usd_per_hour:
        table.add_row("price", f"${profile.price_usd_per_hour:.2f}/hour")
    for flag in profile.flags:
        table.add_row(Text("flag", style="yellow"), flag)
    console.print(table)
