"""Typed errors. The CLI catches `OrchError` once, prints one line and exits with `exit_code`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class OrchError(Exception):
    """Base of every error a user can act on."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class InputError(OrchError):
    """Bad command line or file: exit 2, nothing runs."""


class WorkloadError(InputError):
    """A workload file that is missing, unreadable or invalid."""


class ProfileError(InputError):
    """A hardware profile that is missing, unreadable or invalid."""


class EnvironmentUnavailable(OrchError):
    """The machine cannot do what was asked (no GPU for a GPU placement, ...): exit 3."""

    exit_code = EXIT_ENVIRONMENT


class Interrupted(OrchError):
    """A run stopped by Ctrl-C or SIGTERM, said in one line with how to resume it."""

    exit_code = EXIT_INTERRUPTED


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run: its finished jobs are kept, and it can be resumed."""

    def __init__(self, run_id: str, workload_path: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id
        self.workload_path = workload_path


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or a list of the valid names."""
    valid = sorted(set(valid))
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    shown = ", ".join(valid[:12]) + (", ..." if len(valid) > 12 else "")
    return f"expected one of: {shown}"
