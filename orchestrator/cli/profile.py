"""`orch profile`, `orch profile show`, `orch profile list`, and the profile every other command
falls back to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import (Format, FormatOption, _file_to_write, _print_data, _print_profile, log, profile_app,
                                     stderr, stdout)


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
    quick: Annotated[bool, typer.Option("--quick", help="small sizes, under two minutes on 2 cores")] = False,
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
    if result.system.gpu_discovery_note:
        log.debug("gpus: %s", result.system.gpu_discovery_note)
    stderr.print(f"saved {path}")
    _print_profile(result, fmt)


def _profile_cluster(address: str, fmt: Format) -> None:
    """`orch profile --address`: each host's workers, cores, memory and GPUs, and the measured
    worker-to-worker network, saved for `orch plan/run --address` of the same address."""
    from orchestrator.run.survey import survey

    found, path = survey(address)
    stderr.print(f"saved {path}")
    if not _print_data(found, fmt):
        for host, entry in found["hosts"].items():
            stdout.print(f"{host}: {entry['workers']} worker(s), {entry['threads']} threads, {entry['cores']} cores, "
                         f"{entry['memory_bytes'] / 2**30:.1f} GiB, {entry['gpus']} GPU(s)")
        measured = found["network"]
        stdout.print(f"network {measured['between'][0]} -> {measured['between'][1]}: "
                     f"{measured['bandwidth'] / 1e9:.3g} GB/s, {measured['latency_s'] * 1e6:.0f} µs latency")


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

