"""Build `orch report` from a recorded run: the hardware it was planned for (kept with the run),
its jobs' predictions and measurements, and the model's curves around them.

Charts: a roofline per device kind (each job a point), a crossover chart per op family
(predicted time against work for every placement the hardware offers, or a `--compare`
profile's GPUs, with the measured points and the crossover marked), predicted against
measured with a +-25% band. Tables: inventory and ceilings, every job with its placement, times,
dollars and energy, and the plan's makespan against the run's wall time.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from dataclasses import dataclass, field
from typing import Any

from orchestrator.cost import rates
from orchestrator.cost.candidates import candidates
from orchestrator.cost.model import Hardware, predict
from orchestrator.ops import ITEMSIZE
from orchestrator.ops import get as get_op
from orchestrator.placement import Placement
from orchestrator.report.svg import LogChart
from orchestrator.results.noise import noise_of
from orchestrator.results.rows import JobRow
from orchestrator.results.status import JobStatus
from orchestrator.units import seconds, si
from orchestrator.workload.model import Job

REACH = 32.0   # the curves run from 1/32 of the smallest job's work to 32x the largest's
STEPS = 33
BAND = 0.25


@dataclass
class Crossover:
    op: str
    text: str
    chart: str


@dataclass
class Report:
    run: dict[str, Any]
    hw: Hardware
    jobs: list[JobRow]
    wall_s: float | None
    costs: list[tuple[float | None, float | None]] = field(default_factory=list)  # (USD, J) per job
    inventory: list[tuple[str, str]] = field(default_factory=list)
    charts: list[tuple[str, str]] = field(default_factory=list)   # (heading, svg)
    crossovers: list[Crossover] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    noise: dict[str, dict[str, float]] = field(default_factory=dict)


def _job(row: JobRow, params: dict[str, Any] | None = None) -> Job:
    return Job(name=row.name, op=row.op, params=params or row.params, dtype=row.dtype or "float32",
               data=row.data or "host")


def build(run: dict[str, Any], jobs: list[JobRow], hw: Hardware, compare: Hardware | None = None) -> Report:
    wall = None
    if run.get("finished"):
        wall = (_time(run["finished"]) - _time(run["started"])).total_seconds()
    report = Report(run, hw, jobs, wall, costs=[_cost_energy(row, hw) for row in jobs])
    report.inventory = inventory(hw)
    ok = [row for row in jobs if row.status == JobStatus.OK and row.measured_s and row.placement]
    for kind in sorted({Placement.parse(row.placement).device for row in ok}):
        report.charts.append((f"Roofline: {kind}", roofline(hw, kind, [r for r in ok if r.placement.startswith(kind)])))
    for op in dict.fromkeys(row.op for row in ok):
        report.crossovers.append(crossover(hw, compare, [r for r in ok if r.op == op]))
    report.charts.append(("Predicted against measured", predicted_vs_measured(ok)))
    report.noise = noise_of(jobs, run.get("probes"))
    errors = sorted(abs(r.predicted_s - r.measured_s) / r.measured_s for r in ok if r.predicted_s)
    if errors:
        report.accuracy = {"jobs": len(errors), "median": errors[len(errors) // 2],
                           "p90": errors[min(len(errors) - 1, math.ceil(0.9 * len(errors)) - 1)],
                           "within_band": sum(e <= BAND for e in errors) / len(errors)}
    return report


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _cost_energy(row: JobRow, hw: Hardware) -> tuple[float | None, float | None]:
    if not row.measured_s or not row.placement:
        return None, None
    placement = Placement.parse(row.placement)
    if placement.device == "gpu" and not hw.gpus:
        return None, None
    price = hw.node.price_usd_per_hour
    cost = row.measured_s / 3600 * price * placement.nodes if price else None
    return cost, row.measured_s * rates.power_w(hw.node, placement)


def inventory(hw: Hardware) -> list[tuple[str, str]]:
    cpu = hw.node.cpu
    rows = [("hardware", f"{hw.name}" + (f" x {hw.nodes} nodes" if hw.nodes > 1 else "")),
            ("cpu", f"{cpu.model}: {cpu.cores_physical} cores / {cpu.cores_logical} threads"),
            ("memory", si(cpu.memory_total_bytes, "B", binary=True)),
            ("cpu peak (measured or datasheet)", ", ".join(f"{d} {si(r, 'FLOP/s')}" for d, r in _peaks(cpu).items())),
            ("cpu memory bandwidth", si(rates.memory_bandwidth(cpu), "B/s"))]
    for gpu in hw.gpus:
        rows += [(f"gpu {gpu.index}", f"{gpu.name}, {si(gpu.memory_total_bytes, 'B', binary=True)}"),
                 (f"gpu {gpu.index} peak", ", ".join(f"{d} {si(r, 'FLOP/s')}" for d, r in _peaks(gpu).items())),
                 (f"gpu {gpu.index} memory bandwidth", si(rates.memory_bandwidth(gpu), "B/s")),
                 (f"gpu {gpu.index} host to device", si(rates.h2d_bandwidth(gpu), "B/s"))]
    if hw.network is not None:
        rows.append(("network", f"{si(hw.network.bandwidth, 'B/s')}, {seconds(hw.network.latency_s)} latency"))
    if hw.node.price_usd_per_hour:
        rows.append(("price", f"${hw.node.price_usd_per_hour:.4g} per node-hour"))
    return rows


def _peaks(device: Any) -> dict[str, float]:
    found = {}
    for dtype in ("float64", "float32", "bfloat16", "float16"):
        rate = rates.gemm_rate(device, dtype, 1 << 14)
        if rate:
            found[dtype] = rate
    return found


def roofline(hw: Hardware, kind: str, rows: list[JobRow]) -> str:
    device = hw.gpus[0] if kind == "gpu" and hw.gpus else hw.node.cpu
    chart = LogChart(f"Roofline, {kind} ({getattr(device, 'name', None) or getattr(device, 'model', kind)})",
                     "arithmetic intensity (FLOP per byte moved)", "achieved FLOP/s")
    bandwidth = rates.memory_bandwidth(device)
    intensities = [0.01 * 10 ** (k / 4) for k in range(0, 29)]
    for dtype, peak in _peaks(device).items():
        chart.line(f"{dtype} ceiling", [(i, min(peak, bandwidth * i)) for i in intensities])
    points, names = [], []
    for row in rows:
        op = get_op(row.op)
        flops = op.flops(row.params)
        moved = op.traffic_bytes(row.params, ITEMSIZE[row.dtype or "float32"])
        points.append((flops / moved if moved else 0.0, flops / row.measured_s))
        names.append(f"{row.name}: {si(flops / row.measured_s, 'FLOP/s')}")
    chart.scatter("jobs (measured)", points, names)
    return chart.render()


def _scaled(params: dict[str, Any], op_name: str, scale: float) -> dict[str, Any]:
    """The job's size parameters multiplied together by one factor, found by bisection in log
    space, so that its work is about `scale` times the original."""
    op = get_op(op_name)
    if op.grown(params, 2.0) == params:
        return params  # nothing it has grows its work
    target = scale * (op.flops(params) or 1.0)
    low, high = -12.0, 12.0  # log of the factor
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if op.flops(op.grown(params, math.exp(mid))) < target else (low, mid)
    return op.grown(params, math.exp(high))


def crossover(hw: Hardware, compare: Hardware | None, rows: list[JobRow]) -> Crossover:
    op = rows[0].op
    works = [get_op(op).flops(r.params) or 1.0 for r in rows]
    base = rows[works.index(max(works))]
    low = min(works) / REACH / max(works)
    scales = [low * (REACH / low) ** (k / (STEPS - 1)) for k in range(STEPS)]
    lines: dict[str, list[tuple[float, float]]] = {}
    sources = [(hw, "")] + ([(compare, f"{compare.name} ")] if compare is not None else [])
    for source, prefix in sources:
        for placement in candidates(source):
            if source is compare and (placement.device == "cpu" or placement.nodes > 1):
                continue  # the other profile's GPUs against this hardware's CPU
            label = f"{prefix}{placement}"
            for scale in scales:
                params = _scaled(base.params, op, scale)
                pred = predict(_job(base, params), placement, source)
                if pred.feasible:
                    lines.setdefault(label, []).append((get_op(op).flops(params), pred.predicted_s))
    chart = LogChart(f"{op}: predicted time against work ({base.dtype}, data on {base.data})",
                     "work (FLOP)", "seconds")
    for label, points in lines.items():
        dashed = compare is not None and label.startswith(f"{compare.name} ")
        chart.line(label, points, dash="6 3" if dashed else None)
    chart.scatter("measured", [(get_op(op).flops(r.params), r.measured_s) for r in rows],
                  [f"{r.name} on {r.placement}: {seconds(r.measured_s)}" for r in rows])
    text = _crossover_text(op, lines, chart, f"{compare.name} " if compare is not None else None)
    return Crossover(op, text, chart.render())


def _crossover_text(op: str, lines: dict[str, list[tuple[float, float]]], chart: LogChart,
                    compared: str | None = None) -> str:
    """Where this hardware's own alternatives overtake its CPU; the compared profile's where it
    has none (a CPU-only machine)."""
    if "cpu" not in lines or len(lines) < 2:
        return f"{op}: one placement only on this hardware; no crossover to draw (try --compare h100-sxm)."
    cpu = dict(lines["cpu"])
    others = {label: dict(points) for label, points in lines.items() if label != "cpu"}
    own = {label: points for label, points in others.items() if not (compared and label.startswith(compared))}
    others = own or others
    works = sorted(w for w in cpu if all(w in o for o in others.values()))
    if not works:
        return f"{op}: the alternatives are infeasible at these sizes."
    best = [(w, min(others, key=lambda label, w=w: others[label][w])) for w in works]
    crossing = next(((w, label) for w, label in best if others[label][w] < cpu[w]), None)
    small_w, small_label = best[0]
    large_w, large_label = best[-1]
    small = others[small_label][small_w] / cpu[small_w]
    large = cpu[large_w] / others[large_label][large_w]
    start = (f"{op}: at {si(small_w, 'FLOP')} the best alternative ({small_label}) is "
             + (f"{small:.3g}x slower than cpu" if small >= 1 else f"{1 / small:.3g}x faster than cpu"))
    end = (f"; at {si(large_w, 'FLOP')} {large_label} is "
           + (f"{large:.3g}x faster" if large >= 1 else f"{1 / large:.3g}x slower"))
    if crossing is None:
        return start + end + "; cpu stays fastest over this range."
    chart.marker(crossing[0], f"{crossing[1]} faster above {si(crossing[0], 'FLOP')}")
    if crossing[0] == small_w:
        return start + end + "."
    return start + end + f"; the crossover is at about {si(crossing[0], 'FLOP')}."


def predicted_vs_measured(rows: list[JobRow]) -> str:
    chart = LogChart("Predicted against measured (band: +-25%)", "measured seconds", "predicted seconds")
    values = [r.measured_s for r in rows] + [r.predicted_s for r in rows if r.predicted_s]
    if values:
        low, high = min(values) / 1.5, max(values) * 1.5
        span = [low * (high / low) ** (k / 20) for k in range(21)]
        chart.band(f"+-{BAND:.0%}", [(x, x * (1 - BAND)) for x in span], [(x, x * (1 + BAND)) for x in span])
        chart.line("predicted = measured", [(x, x) for x in span], dash="4 3")
    chart.scatter("jobs", [(r.measured_s, r.predicted_s or 0.0) for r in rows],
                  [f"{r.name}: predicted {seconds(r.predicted_s)}, measured {seconds(r.measured_s)}" for r in rows])
    return chart.render()


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}td.num{text-align:right}th{background:#f3f3f3}
svg{display:block;margin:8px 0 18px 0}svg .title{font-size:14px;font-weight:600}
svg .tick{font-size:11px;fill:#444}svg .label{font-size:12px;fill:#222}
svg .frame{fill:none;stroke:#999}svg .grid{stroke:#e6e6e6}svg .marker{stroke:#555;stroke-dasharray:3 3}
.failed{color:#b00}.note{color:#555;font-size:13px}
"""


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.3g}"


def _energy(value: float | None) -> str:
    return "-" if value is None else si(value, "J")


def _table_rows(report: Report) -> list[list[str]]:
    out = []
    for r, (cost_usd, energy_j) in zip(report.jobs, report.costs, strict=True):
        error = f"{(r.predicted_s - r.measured_s) / r.measured_s:+.0%}" if r.predicted_s and r.measured_s else "-"
        out.append([r.name, r.op, r.placement or "-", seconds(r.predicted_s), seconds(r.measured_s),
                    error, r.status, str(r.attempts), _money(cost_usd), _energy(energy_j),
                    ", ".join(r.workers or [])])
    return out


HEADERS = ["job", "op", "placement", "predicted", "measured", "error", "status", "attempts", "cost", "energy", "worker"]


def _summary_lines(report: Report) -> list[str]:
    run = report.run
    lines = [f"run {run['run_id']}: workload {run['workload']} on {run['backend']}, profile {run['profile']}, "
             f"status {run['status']}"]
    done = sum(r.status == JobStatus.OK for r in report.jobs)
    lines.append(f"{done}/{len(report.jobs)} jobs ok")
    if run.get("makespan_s") is not None:
        actual = f"{seconds(report.wall_s)} actual wall time" if report.wall_s is not None else "no wall time yet"
        lines.append(f"plan makespan {seconds(run['makespan_s'])} predicted; {actual} (cluster start-up included)")
    if report.accuracy:
        a = report.accuracy
        lines.append(f"prediction error over {a['jobs']} ok jobs: median {a['median']:.1%}, p90 {a['p90']:.1%}, "
                     f"{a['within_band']:.0%} within +-{BAND:.0%}")
    for kind, noise in report.noise.items():
        lines.append(f"noise ({kind}): the sentinel kernel's speed varied {noise['spread']:.0%} over "
                     f"{noise['probes']:.0f} probes during the run (median GEMM {seconds(noise['gemm_s'])}, "
                     f"copy {seconds(noise['copy_s'])})")
    return lines


def to_html(report: Report) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>orch report {esc(report.run['run_id'])}</title><style>{CSS}</style></head><body>",
             f"<h1>orch report: {esc(report.run['workload'])} ({esc(report.run['run_id'])})</h1>"]
    parts += [f'<p class="note">{esc(line)}</p>' for line in _summary_lines(report)]
    parts.append("<h2>Hardware and its ceilings</h2><table>")
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in report.inventory]
    parts.append("</table>")
    for heading, svg in report.charts[:-1]:
        parts += [f"<h2>{esc(heading)}</h2>", svg]
    parts.append("<h2>Crossovers</h2>")
    for c in report.crossovers:
        parts += [f'<p class="note">{esc(c.text)}</p>', c.chart]
    if report.charts:
        parts += [f"<h2>{esc(report.charts[-1][0])}</h2>", report.charts[-1][1]]
    parts.append("<h2>Jobs</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in HEADERS) + "</tr>")
    for row, job in zip(_table_rows(report), report.jobs, strict=True):
        klass = ' class="failed"' if job.status != JobStatus.OK else ""
        cells = "".join(f'<td class="num">{esc(c)}</td>' if i in (3, 4, 5, 7, 8, 9) else f"<td>{esc(c)}</td>"
                        for i, c in enumerate(row))
        parts.append(f"<tr{klass}>{cells}</tr>")
        if job.status != JobStatus.OK and job.error:
            parts.append(f'<tr class="failed"><td></td><td colspan="{len(HEADERS) - 1}">{esc(job.error)}</td></tr>')
    parts.append("</table></body></html>")
    return "\n".join(parts)


def to_markdown(report: Report) -> str:
    lines = [f"# orch report: {report.run['workload']} ({report.run['run_id']})", ""]
    lines += [f"- {line}" for line in _summary_lines(report)] + ["", "## Hardware", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in report.inventory]
    lines += ["", "## Crossovers", ""] + [f"- {c.text}" for c in report.crossovers]
    lines += ["", "## Jobs", "", "| " + " | ".join(HEADERS) + " |", "|" + " --- |" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _table_rows(report)]
    return "\n".join(lines) + "\n"


__all__ = ["Report", "build", "to_html", "to_markdown"]
