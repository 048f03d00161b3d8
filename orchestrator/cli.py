"""The `orch` command line: a thin shell over the packages. Errors are one line, exit codes per
the contract (0 ok, 1 job failed, 2 bad input, 3 environment), tracebacks only with --debug."""

from __future__ import annotations

import enum
import signal
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.text import Text

from orchestrator import paths
from orchestrator.errors import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    InputError,
    Interrupted,
    OrchError,
    RunInterrupted,
)
from orchestrator.plan.objective import Objective

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Where should this run, and how long will it take?")
profile_app = typer.Typer(invoke_without_command=True, help="Discover and measure this machine; show saved profiles.")
app.add_typer(profile_app, name="profile")

# Strings from users and files are printed as text: no Rich markup ("[/x]" in a run id crashed
# it, "d[seed=99]" lost its suffix), no emoji codes, no highlighting.
stdout = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
stderr = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)
DEBUG = False


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


FormatOption = Annotated[Format, typer.Option("--format", "-f", help="table, json or yaml")]
WorkloadArg = Annotated[Path, typer.Argument(help="workload YAML file")]
ProfileOption = Annotated[str | None, typer.Option("--profile", "-p", help="profile name or path")]
ObjectiveOption = Annotated[Objective, typer.Option("--objective", help="time, cost or energy")]
PlacementOption = Annotated[str | None, typer.Option("--placement", help="force one placement for every job")]


def TLSOption(flag: str, text: str):  # noqa: N802 - reads as the type it makes (an Annotated option)
    return Annotated[Path | None, typer.Option(flag, help=text, exists=True, dir_okay=False, readable=True)]


def tls_files(ca_file: Path | None, cert: Path | None, key: Path | None):
    """The three --tls-* files together, or none of them (exit 2 for a partial set)."""
    from orchestrator.backends.base import TLSFiles
    from orchestrator.errors import InputError

    given = {"--tls-ca-file": ca_file, "--tls-cert": cert, "--tls-key": key}
    if not any(given.values()):
        return None
    missing = [flag for flag, value in given.items() if value is None]
    if missing:
        raise InputError(f"{', '.join(missing)}: needed with the other --tls-* options", fix="pass all three")
    return TLSFiles(str(ca_file), str(cert), str(key))


def parse_placement(text: str | None):
    """--placement as a Placement (None when not given); bad input is exit 2."""
    from orchestrator.errors import InputError
    from orchestrator.placement import Placement

    if not text:
        return None
    try:
        return Placement.parse(text)
    except ValueError as exc:
        raise InputError(f"--placement: {exc} (got {text!r})") from None


def _print_as(render, value, fmt: Format) -> None:
    """Print with a render module's as_json / as_yaml / print_table."""
    if fmt is Format.json:
        print(render.as_json(value))
    elif fmt is Format.yaml:
        print(render.as_yaml(value), end="")
    else:
        render.print_table(value, stdout)


def _print_data(data, fmt: Format) -> bool:
    """Print plain data (dicts, lists) as JSON or YAML; False for --format table (the caller draws it)."""
    if fmt is Format.json:
        import json

        print(json.dumps(data, indent=2))
    elif fmt is Format.yaml:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")
    return fmt is not Format.table


def _print_profile(profile, fmt: Format) -> None:
    from orchestrator.profile import render

    _print_as(render, profile, fmt)


def measure_profile(quick: bool):
    """Profile this machine with a progress bar on a terminal (stderr)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from orchestrator.hardware.profiler import profile_machine

    if not stderr.is_terminal:
        return profile_machine(quick=quick)
    with Progress(TextColumn("profiling {task.description}", markup=False), BarColumn(), TimeElapsedColumn(),
                  console=stderr, transient=True) as bar:
        task = bar.add_task("", total=None)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=done, total=total)

        return profile_machine(quick=quick, progress=progress)


@profile_app.callback()
def profile(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="small sizes, under 30 s")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="where to save (default: the profile store)")] = None,
    address: Annotated[str | None, typer.Option("--address", help="measure the network between this Dask cluster's hosts")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Discover CPU, memory and GPUs, run the microbenchmarks, save and print the profile.
    With --address: the running cluster's hosts and the network between them instead."""
    if ctx.invoked_subcommand is not None:
        return
    from orchestrator.profile import store

    if address:
        _profile_cluster(address, fmt)
        return

    if output is not None:
        _file_to_write(output, "--output", (".yaml", ".yml"))  # before 20 s of measuring, not after
    result = measure_profile(quick)
    path = store.save(result, output)
    if DEBUG and result.system.gpu_discovery_note:
        stderr.print(f"gpus: {result.system.gpu_discovery_note}")
    stderr.print(f"saved {path}")
    _print_profile(result, fmt)


def _profile_cluster(address: str, fmt: Format) -> None:
    """`orch profile --address`: each host's workers, cores, memory and GPUs, and the measured
    worker-to-worker network, saved for `orch plan/run --address` of the same address."""


    from orchestrator.backends.dask import DaskBackend
    from orchestrator.errors import EnvironmentUnavailable
    from orchestrator.profile import network

    engine = DaskBackend(address)
    capacity = engine.start(cores=0, gpus=0)
    try:
        if capacity.nodes < 2:
            raise EnvironmentUnavailable(f"--address {address}: every worker is on one host "
                                         f"({', '.join(capacity.hosts)}); no network between nodes to measure")
        measured = {**network.measure(engine.client, capacity.hosts), "address": address}
        hosts = engine.client.run(_host_resources)
    finally:
        engine.close()
    path = network.save(address, measured)
    stderr.print(f"saved {path}")
    by_host: dict[str, dict] = {}
    for worker, info in hosts.items():
        host = next(h for h, members in capacity.hosts.items() if worker in members)
        entry = by_host.setdefault(host, {"workers": 0, "threads": 0, "memory_bytes": info["memory_bytes"],
                                          "cores": info["cores"], "gpus": info["gpus"]})
        entry["workers"] += 1
        entry["threads"] += info["threads"]
    if not _print_data({"address": address, "hosts": by_host, "network": measured}, fmt):
        for host, entry in by_host.items():
            stdout.print(f"{host}: {entry['workers']} worker(s), {entry['threads']} threads, {entry['cores']} cores, "
                         f"{entry['memory_bytes'] / 2**30:.1f} GiB, {entry['gpus']} GPU(s)")
        stdout.print(f"network {measured['between'][0]} -> {measured['between'][1]}: "
                     f"{measured['bandwidth'] / 1e9:.3g} GB/s, {measured['latency_s'] * 1e6:.0f} µs latency")


def _host_resources(dask_worker=None) -> dict:
    import os

    import psutil

    from orchestrator.backends.base import local_gpu_count

    return {"threads": dask_worker.state.nthreads if dask_worker else 1, "cores": os.cpu_count(),
            "memory_bytes": psutil.virtual_memory().total, "gpus": local_gpu_count()}


@profile_app.command("show")
def profile_show(name: Annotated[str, typer.Argument(help="a profile name or a path to a YAML file")],
                 fmt: FormatOption = Format.table) -> None:
    """Print a saved or bundled profile."""
    from orchestrator.profile import store

    _print_profile(store.resolve(name), fmt)


@profile_app.command("list")
def profile_list(fmt: FormatOption = Format.table) -> None:
    """List bundled and saved profiles."""
    from rich.table import Table

    from orchestrator.profile import store

    found = store.entries()
    if _print_data([{"name": e.name, "origin": e.origin, "kind": e.kind, "path": str(e.path)} for e in found], fmt):
        return
    table = Table("name", "origin", "kind", "path")
    for entry in found:
        table.add_row(entry.name, entry.origin, entry.kind, str(entry.path))
    stdout.print(table)


def load_profile(name: str | None):
    """--profile NAME|PATH, else this host's newest saved profile, else a quick profile first."""
    from orchestrator.profile import store

    if name:
        return store.resolve(name)
    found = store.newest_for_host()
    if found is not None:
        return found
    stderr.print(f"no saved profile for {store.this_host()}: profiling quickly first (orch profile --quick)")
    measured = measure_profile(quick=True)
    stderr.print(f"saved {store.save(measured)}")
    return measured


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
        from orchestrator.run.runner import discover

        notes: list[str] = []
        hardware = discover(hardware, address, notes, tls=tls_files(tls_ca_file, tls_cert, tls_key))
        for note in notes:
            stderr.print(Text(f"note: {note}"))
    result = make_plan(loaded, hardware, objective.value, forced)
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
    fmt: FormatOption = Format.table,
) -> None:
    """Execute the plan on Dask (default) or Ray and record measured times."""

    from orchestrator.errors import EXIT_JOB_FAILED
    from orchestrator.plan.hardware import hardware_for
    from orchestrator.run import render as run_render
    from orchestrator.run.runner import as_contract, run_workload
    from orchestrator.workload.loader import load

    loaded = load(workload)
    forced = parse_placement(placement)
    hardware = hardware_for(load_profile(profile))
    try:
        with run_render.stdout_for_results_only(), run_render.Progress(stderr) as progress:
            report = run_workload(loaded, hardware, backend=backend.value, address=address, forced=forced,
                                  objective=objective.value, resume=resume, on_event=progress.event, retries=retries,
                                  tls=tls_files(tls_ca_file, tls_cert, tls_key), learn=learn)
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

    from orchestrator.cost.calibration import refit
    from orchestrator.errors import InputError
    from orchestrator.plan.hardware import hardware_for
    from orchestrator.results.store import ResultStore

    hardware = hardware_for(load_profile(profile), calibrated=False)
    store = ResultStore()
    try:
        done = refit(hardware.name, hardware, store)
    finally:
        store.close()
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
    from orchestrator.plan.hardware import hardware_for
    from orchestrator.profile import store as profiles
    from orchestrator.report.build import build, to_html, to_markdown
    from orchestrator.results.store import ResultStore
    from orchestrator.run.runner import hardware_from

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

    hw = hardware_from(json.loads(run["hardware"])) if run.get("hardware") else hardware_for(profiles.resolve(run["profile"]))
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


def _file_to_write(path: Path, option: str, suffixes: tuple[str, ...]) -> Path:
    """A file orch may write: its folder exists, it is no folder and no symbolic link, and it
    has one of `suffixes`; otherwise exit 2 before any work."""
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{option} {path}: must end in {' or '.join(suffixes)}", fix=f"name a {suffixes[0]} file")
    if path.is_symlink():
        raise InputError(f"{option} {path}: is a symbolic link; orch does not write through links",
                         fix="name a regular file")
    if path.is_dir():
        raise InputError(f"{option} {path}: is a folder", fix=f"name a file in it, e.g. {path / ('out' + suffixes[0])}")
    if not path.parent.is_dir():
        raise InputError(f"{option} {path}: folder {path.parent} does not exist", fix="create it first")
    return path


def _terminate(signum: int, frame: object) -> None:
    # once: scancel signals every process of the job, and a second SIGTERM must not cut short
    # the shutdown the first one started
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def _error(message: str) -> None:
    """One red `error:` line; control characters in the message are shown escaped, so a hostile
    argument or file cannot send escape sequences to the terminal, nor break the line."""
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in message)
    stderr.print(Text.assemble(("error: ", "red"), shown))


def main(argv: list[str] | None = None) -> None:
    """Entry point: `--debug` anywhere on the line turns tracebacks on."""
    global DEBUG
    args = list(sys.argv[1:] if argv is None else argv)
    DEBUG = "--debug" in args
    args = [a for a in args if a != "--debug"]
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM ends a run as Ctrl-C does
    try:
        code = app(args=args, prog_name="orch", standalone_mode=False)
        if code == EXIT_INTERRUPTED:  # typer returns Ctrl-C as 130, silently
            _error("interrupted")
        if isinstance(code, int) and code:  # typer.Exit(n) comes back as a return value here
            sys.exit(code)
    except OrchError as exc:
        if DEBUG:
            stderr.print_exception()
        fix = f" (to fix: {exc.fix})" if exc.fix else ""
        _error(f"{exc.message}{fix}")
        sys.exit(exc.exit_code)
    except (typer.Exit, click.exceptions.Exit) as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, click.exceptions.Abort, KeyboardInterrupt):
        _error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except (typer.TyperException, click.ClickException) as exc:
        # typer ≥ 0.20 vendors click, so its exceptions are not click's.
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(0)
        if DEBUG:
            stderr.print_exception()
        message = exc.format_message().replace("Value error, ", "")
        _error(message)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        _error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if DEBUG:
            stderr.print_exception()
        _error(f"internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)")
        sys.exit(EXIT_ENVIRONMENT)  # 1 is reserved for failed jobs
    finally:
        signal.signal(signal.SIGTERM, previous)
