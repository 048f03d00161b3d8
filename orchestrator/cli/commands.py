"""`orch plan`, `run`, `calibrate`, `ops`, `report` and `runs`."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from orchestrator import paths
from orchestrator.errors import Interrupted, RunInterrupted
from orchestrator.plan.objective import Objective
from orchestrator.cli.common import (Format, FormatOption, ObjectiveOption, PlacementOption, ProfileOption, TLSOption,
                                     WorkloadArg, _file_to_write, _print_as, _print_data, app, parse_placement, stderr,
                                     stdout, tls_files)
from orchestrator.cli.profile import load_profile


@app.command()
def plan(
    workload: WorkloadArg,
    profile: ProfileOption = None,
    address: Annotated[str | None, typer.Option("--address", help="plan for the cluster at this scheduler")] = None,
    objective: ObjectiveOption = Objective.time,
    placement: PlacementOption = None,
    explain: Annotated[str | None, typer.Option("--explain", help="print every term of every candidate of JOB")] = None,
    tls_ca_file: TLSOption("--tls-ca-file", "CA certificate of a tls:// scheduler") = None,
    tls_cert: TLSOption("--tls-cert", "this client's certificate for a tls:// scheduler") = None,
    tls_key: TLSOption("--tls-key", "this client's private key for a tls:// scheduler") = None,
    exclusive: Annotated[bool, typer.Option("--exclusive", help="plan as `orch run --exclusive` runs: each CPU job "
                                            "alone on every core")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Predict each job's time on every candidate placement and pick one; runs nothing.
    With --address, for the Dask cluster there: one node per worker host."""
    from orchestrator.plan import render
    from orchestrator.plan.hardware import hardware_for
    from orchestrator.plan.planner import make_plan
    from orchestrator.workload.loader import load

    loaded = load(workload)
    forced = parse_placement(placement)
    hardware = hardware_for(load_profile(profile))
    if address:
        from orchestrator.run.capacity import discover

        notes: list[str] = []
        hardware = discover(hardware, address, notes, tls=tls_files(tls_ca_file, tls_cert, tls_key))
        for note in notes:
            stderr.print(Text(f"note: {note}"))
    result = make_plan(loaded, hardware, objective.value, forced, shared_host=address is None, exclusive=exclusive)
    for job_plan in result.jobs:
        if job_plan.chosen is None:
            stderr.print(Text(f"warning: {job_plan.job.source}: job '{job_plan.job.name}' {job_plan.reason}"))
    if explain:
        render.print_explain(result, explain, stdout)
    else:
        _print_as(render, result, fmt)


class BackendChoice(str, enum.Enum):
    dask = "dask"
    ray = "ray"


@app.command()
def run(
    workload: WorkloadArg,
    profile: ProfileOption = None,
    backend: Annotated[BackendChoice, typer.Option("--backend", help="dask or ray")] = BackendChoice.dask,
    address: Annotated[str | None, typer.Option("--address", help="an existing cluster: tcp://host:8786, tls://..., or a Ray address")] = None,
    placement: PlacementOption = None,
    resume: Annotated[str | None, typer.Option("--resume", help="finish the unfinished jobs of RUN_ID")] = None,
    objective: ObjectiveOption = Objective.time,
    retries: Annotated[int | None, typer.Option("--retries", min=0, max=100,
                                                help="re-runs of a job after its worker dies (default 3)")] = None,
    tls_ca_file: TLSOption("--tls-ca-file", "CA certificate of a tls:// scheduler") = None,
    tls_cert: TLSOption("--tls-cert", "this client's certificate for a tls:// scheduler") = None,
    tls_key: TLSOption("--tls-key", "this client's private key for a tls:// scheduler") = None,
    learn: Annotated[bool, typer.Option("--learn/--no-learn",
                                        help="refit the profile's calibration with this run (default on)")] = True,
    exclusive: Annotated[bool, typer.Option("--exclusive", help="each CPU job alone on every core (default: "
                                            "one-thread jobs run side by side, one per core)")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Execute the plan on Dask (default) or Ray and record measured times."""

    from orchestrator.errors import EXIT_JOB_FAILED
    from orchestrator.plan.hardware import hardware_for
    from orchestrator.run import render as run_render
    from orchestrator.run.runner import RunOptions, as_contract, run_workload
    from orchestrator.workload.loader import load

    loaded = load(workload)
    forced = parse_placement(placement)
    hardware = hardware_for(load_profile(profile))
    try:
        with run_render.stdout_for_results_only(), run_render.Progress(stderr) as progress:
            options = RunOptions(backend.value, address, tls_files(tls_ca_file, tls_cert, tls_key), forced,
                                 objective.value, resume, retries, learn, exclusive)
            report = run_workload(loaded, hardware, options, on_event=progress.event)
    except RunInterrupted as stopped:  # typer would turn it into a silent exit 130
        raise Interrupted(f"interrupted: run {stopped.run_id} keeps every finished job; finish it with "
                          f"orch run {stopped.workload_path} --resume {stopped.run_id}") from None
    for note in report.notes:
        stderr.print(Text(f"note: {note}"))
    if not _print_data(as_contract(report), fmt):
        run_render.print_table(report, stdout)
    if report.failed:
        raise typer.Exit(EXIT_JOB_FAILED)


@app.command()
def calibrate(profile: ProfileOption = None, fmt: FormatOption = Format.table) -> None:
    """Fit the cost model to the recorded runs of a profile; print the error before and after."""

    from orchestrator.cost.refit import refit_recorded
    from orchestrator.errors import InputError
    from orchestrator.plan.hardware import hardware_for

    hardware = hardware_for(load_profile(profile), calibrated=False)
    done = refit_recorded(hardware)
    if done is None:
        raise InputError(f"--profile {hardware.name}: no recorded ok jobs to learn from",
                         fix=f"run a workload first: orch run W.yaml --profile {hardware.name}")
    data = {"profile": hardware.name, "path": str(done.path), "before": done.before, "after": done.after,
            "groups": [g.model_dump() for g in done.calibration.groups]}
    if _print_data(data, fmt):
        return
    from orchestrator.cost import calibration_render

    calibration_render.print_table(done, stdout)


@app.command()
def report(
    run_id: Annotated[str | None, typer.Argument(help="the run to report (default: the newest)")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="the newest run")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write (a .md summary goes beside it)")] = None,
    compare: Annotated[str | None, typer.Option("--compare", help="draw this profile's placements on the crossover charts too")] = None,
) -> None:
    """Write a self-contained HTML report of a run (and a Markdown summary beside it)."""
    from orchestrator.errors import InputError
    from orchestrator.cost.model import Hardware
    from orchestrator.plan.hardware import hardware_for
    from orchestrator.profile import store as profiles
    from orchestrator.report.build import build, to_html, to_markdown
    from orchestrator.results.store import ResultStore

    if run_id and latest:
        raise InputError("report: give a RUN_ID or --latest, not both")
    store = ResultStore(read_only=True)
    try:
        chosen = run_id or store.latest_run_id()
        if chosen is None:
            raise InputError("report: no recorded runs", fix="run a workload first: orch run W.yaml")
        run = store.run(chosen)
        if run is None:
            raise InputError(f"report: no run '{chosen}'", fix="`orch runs` lists them")
        jobs = store.jobs(chosen)
    finally:
        store.close()
    import json

    hw = Hardware.from_data(json.loads(run["hardware"])) if run.get("hardware") else hardware_for(profiles.resolve(run["profile"]))
    other = hardware_for(profiles.resolve(compare)) if compare else None
    built = build(run, jobs, hw, other)
    path = _file_to_write(output or Path(f"orch-report-{chosen}.html"), "--output", (".html", ".htm"))
    summary = _file_to_write(path.with_suffix(".summary.md"), "the summary beside --output", (".md",))
    paths.write_atomic(path, to_html(built), mode=0o644)
    paths.write_atomic(summary, to_markdown(built), mode=0o644)
    stderr.print(Text(f"wrote {path} and its Markdown summary {summary}"))


@app.command(name="ops")
def list_ops(name: Annotated[str | None, typer.Argument(help="one op: a name, package.module:attribute or entry point")] = None,
             fmt: FormatOption = Format.table) -> None:
    """List the ops a workload can name: the catalog's and those installed packages register."""
    from orchestrator.errors import InputError
    from orchestrator.ops import render

    try:
        found = render.listing(name)
    except KeyError as exc:
        raise InputError(exc.args[0]) from None
    if not _print_data(found, fmt):
        render.print_table(found, stdout)


@app.command()
def runs(fmt: FormatOption = Format.table) -> None:
    """List recorded runs, newest first."""
    import dataclasses

    from rich.table import Table

    from orchestrator.results.store import ResultStore

    with ResultStore(read_only=True) as store:
        found = store.runs()
    if _print_data([dataclasses.asdict(r) for r in found], fmt):
        return
    table = Table("run_id", "workload", "status", "done", "started")
    for r in found:
        table.add_row(r.run_id, Text(r.workload), r.status, f"{r.done}/{r.total}", r.started)
    stdout.print(table)

