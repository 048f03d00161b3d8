"""The `orch` command line: a thin shell over the packages. Errors are one line, exit codes per
the contract (0 ok, 1 job failed, 2 bad input, 3 environment), tracebacks only with --debug."""

from __future__ import annotations

import logging
import os
import signal
import sys

import click
import typer
from rich.text import Text

from orchestrator.errors import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERRUPTED, OrchError
from orchestrator.cli import commands, profile  # noqa: F401 - importing them registers the commands
from orchestrator.cli.common import app, log, stderr


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
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if debug:  # what orch logs (logging.getLogger("orch")) goes to standard error
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("debug: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    # CUDA numbers GPUs fastest first unless told otherwise; NVML, and so the profile, by PCI
    # bus. Set before anything initialises CUDA, here and (inherited) in embedded workers.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM ends a run as Ctrl-C does
    try:
        code = app(args=args, prog_name="orch", standalone_mode=False)
        if code == EXIT_INTERRUPTED:  # typer returns Ctrl-C as 130, silently
            _error("interrupted")
        if isinstance(code, int) and code:  # typer.Exit(n) comes back as a return value here
            sys.exit(code)
    except OrchError as exc:
        if debug:
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
        if debug:
            stderr.print_exception()
        message = exc.format_message().replace("Value error, ", "")
        _error(message)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        _error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            stderr.print_exception()
        _error(f"internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)")
        sys.exit(EXIT_ENVIRONMENT)  # 1 is reserved for failed jobs
    finally:
        signal.signal(signal.SIGTERM, previous)
