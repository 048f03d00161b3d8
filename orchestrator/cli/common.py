"""What every `orch` command shares: the typer apps, the consoles, the options and the output
helpers. Strings from users and files are printed as text."""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.errors import InputError
from orchestrator.plan.objective import Objective

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Where should this run, and how long will it take?")
profile_app = typer.Typer(invoke_without_command=True, help="Discover and measure this machine; show saved profiles.")
app.add_typer(profile_app, name="profile")

# Strings from users and files are printed as text: no Rich markup ("[/x]" in a run id crashed
# it, "d[seed=99]" lost its suffix), no emoji codes, no highlighting.
stdout = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
stderr = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)
log = logging.getLogger("orch")  # shown with --debug


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

