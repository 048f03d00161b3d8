"""Print a plan: rich table, JSON/YAML per the contract, and `--explain JOB`."""

from __future__ import annotations

import json
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.cost.model import TERMS, Prediction
from orchestrator.errors import InputError, did_you_mean
from orchestrator.plan.planner import JobPlan, Plan
from orchestrator.units import seconds



def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6g}")


def _candidate(p: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"placement": str(p.placement), "feasible": p.feasible}
    if p.feasible:
        entry.update(predicted_s=_round(p.predicted_s), basis=p.basis, bound=p.bound,
                     cost_usd=_round(p.cost_usd), energy_j=_round(p.energy_j),
                     terms={k: _round(v) for k, v in p.terms.items()})
    if p.note:
        entry["note"] = p.note
    return entry


def _job(jp: JobPlan, objective: str) -> dict[str, Any]:
    chosen = jp.chosen
    return {
        "name": jp.job.name,
        "op": jp.job.op,
        "objective": jp.job.objective or objective,
        "placement": str(chosen.placement) if chosen else None,
        "threads": chosen.threads if chosen else None,
        "predicted_s": _round(chosen.predicted_s) if chosen else None,
        "basis": chosen.basis if chosen else None,
        "bound": chosen.bound if chosen else None,
        "reason": jp.reason,
        "speedup_over_runner_up": _round(jp.speedup),
        "runner_up": str(jp.runner_up.placement) if jp.runner_up else None,
        "cost_usd": _round(chosen.cost_usd) if chosen else None,
        "energy_j": _round(chosen.energy_j) if chosen else None,
        "devices": jp.slot.devices if jp.slot else [],
        "start_s": _round(jp.slot.start_s) if jp.slot else None,
        "dtype": jp.job.dtype,
        "data": jp.job.data,
        "candidates": [_candidate(p) for p in jp.candidates],
    }


def to_data(plan: Plan) -> dict[str, Any]:
    return {"workload": plan.workload, "profile": plan.profile, "objective": plan.objective,
            "makespan_s": _round(plan.makespan_s), "cpu_threads": plan.cpu_threads, "notes": plan.notes,
            "jobs": [_job(jp, plan.objective) for jp in plan.jobs]}


def as_json(plan: Plan) -> str:
    """Indented at the top, one compact line per job: readable, and fast for 10,000 jobs
    (json's C encoder only runs without indent)."""
    data = to_data(plan)
    jobs = data.pop("jobs")
    head = [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in data.items()]
    body = ",\n".join("    " + json.dumps(job) for job in jobs)
    return "{\n" + "\n".join(head) + '\n  "jobs": [\n' + body + ("\n" if jobs else "") + "  ]\n}"


def as_yaml(plan: Plan) -> str:
    return yaml.safe_dump(to_data(plan), sort_keys=False)


WIDE = 120  # columns from which the reason gets a column of its own


def print_table(plan: Plan, console: Console) -> None:
    """One line a job. Below WIDE columns (an 80-column terminal, a pipe) each job's reason
    goes under the table, where it can wrap, rather than folding every row over three lines."""
    wide = console.width >= WIDE
    table = Table(title=f"plan for {plan.workload} on {plan.profile} (objective: {plan.objective})",
                  title_justify="left")
    columns = [("job", "left"), ("placement", "left"), ("predicted", "right"), ("basis", "left"),
               ("bound", "left"), ("vs next", "right")] + ([("reason", "left")] if wide else [])
    for column, justify in columns:
        table.add_column(column, justify=justify, overflow="fold")
    for jp in plan.jobs:
        speedup = f"{jp.speedup:.3g}x" if jp.speedup else "-"
        if jp.chosen is None:
            cells = [jp.job.name, "none", "-", "-", "-", "-"]
        else:
            cells = [jp.job.name, _where(jp.chosen), seconds(jp.chosen.predicted_s), jp.chosen.basis,
                     jp.chosen.bound, speedup]
        table.add_row(*map(Text, cells + ([jp.reason] if wide else [])))
    console.print(table)
    if not wide:
        for jp in plan.jobs:
            console.print(Text(f"{jp.job.name}: {jp.reason}"))
    console.print(f"makespan {seconds(plan.makespan_s)} for {len(plan.jobs)} jobs "
                  "(inputs made, warm-up and repeats included)")
    for note in plan.notes:
        console.print(Text(f"note: {note}"))


def _where(p: Prediction) -> str:
    return f"{p.placement} (1 thread)" if p.threads == 1 else str(p.placement)


def print_explain(plan: Plan, job_name: str, console: Console) -> None:
    match = [jp for jp in plan.jobs if jp.job.name == job_name]
    if not match:
        raise InputError(f"--explain: no job '{job_name}' in {plan.workload}; "
                         f"{did_you_mean(job_name, [jp.job.name for jp in plan.jobs])}")
    jp = match[0]
    params = ", ".join(f"{k}={v}" for k, v in jp.job.params.items())
    console.print(Text(f"{jp.job.name}: {jp.job.op}({params}) dtype={jp.job.dtype} data={jp.job.data}"))
    # one column per placement, one row per term: the headers stay whole at 80 columns
    table = Table("", *[_where(p) + (" *" if p is jp.chosen else "") for p in jp.candidates])
    for term in TERMS:
        table.add_row(term.removesuffix("_s"), *[seconds(p.terms[term]) if p.feasible else "-" for p in jp.candidates])
    table.add_row("predicted", *[seconds(p.predicted_s) if p.feasible else "-" for p in jp.candidates])
    for label, values in (("basis", [p.basis for p in jp.candidates]), ("bound", [p.bound for p in jp.candidates]),
                          ("cost", [f"${p.cost_usd:.3g}" if p.cost_usd is not None else "-" for p in jp.candidates]),
                          ("energy", [f"{p.energy_j:.3g} J" if p.energy_j is not None else "-" for p in jp.candidates])):
        table.add_row(label, *[v if p.feasible else "-" for v, p in zip(values, jp.candidates, strict=True)])
    console.print(table)
    for p in jp.candidates:
        if p.note:
            console.print(Text(f"{p.placement}: {p.note}"))
    console.print(Text(f"chosen: {jp.chosen.placement if jp.chosen else 'none'} — {jp.reason}"))
    console.print("predicted = overhead + max(compute, memory, dispatch) + transfer + communication (docs/cost-model.md)")
