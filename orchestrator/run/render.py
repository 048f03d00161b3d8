"""The progress bar (ETA from the predictions) and the final table of `orch run`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from orchestrator.results.status import JobStatus
from orchestrator.run.events import JobDone, Planned, RunEvent, Warned
from orchestrator.run.runner import RunReport
from orchestrator.units import seconds


class Progress:
    """A bar on a terminal whose total is the plan's predicted busy time, so the ETA is the
    predicted time left; jobs done / total beside it. Silent when stderr is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar: RichProgress | None = None
        self.task: Any = None
        self.done = 0
        self.total = 0

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self.bar = RichProgress(TextColumn("running {task.description}", markup=False), BarColumn(),
                                    TextColumn("{task.fields[jobs]}"), TimeElapsedColumn(), TextColumn("eta"),
                                    TimeRemainingColumn(), console=self.console, transient=True)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def event(self, event: RunEvent) -> None:
        if isinstance(event, Warned):  # on a terminal or not
            self.console.print(Text(f"warning: {event.message}"))
            return
        if self.bar is None:
            return
        if isinstance(event, Planned):
            self.total = event.jobs
            self.task = self.bar.add_task(event.run_id, total=max(event.busy_s, 1e-9), jobs=f"0/{self.total}")
        elif isinstance(event, JobDone) and self.task is not None:
            self.done += 1
            self.bar.update(self.task, advance=event.busy_s, jobs=f"{self.done}/{self.total}",
                            description=Text(f"{event.name} {event.status}").plain)


def print_table(report: RunReport, console: Console) -> None:
    """One line a job at 80 columns: workers are named w1, w2, ... in the table and spelled out
    beneath it (one worker: no column at all)."""
    names: dict[str, str] = {}
    for job in report.jobs:
        for worker in job["workers"]:
            names.setdefault(worker, f"w{len(names) + 1}")
    table = Table(title=f"run {report.run_id}: {report.workload} on {report.backend} ({report.profile})",
                  title_justify="left")
    columns = [("job", "left"), ("placement", "left"), ("predicted", "right"), ("measured", "right"),
               ("error", "right"), ("status", "left")] + ([("worker", "left")] if len(names) > 1 else [])
    for column, justify in columns:
        table.add_column(column, justify=justify, overflow="fold")
    for job in report.jobs:
        error = f"{job['error_pct']:+.0f}%" if job["error_pct"] is not None else "-"
        status = job["status"] if job["status"] == JobStatus.OK else f"{job['status']}: {job['error']}"
        cells = [job["name"], job["placement"] or "-", seconds(job["predicted_s"]), seconds(job["measured_s"]), error,
                 status] + ([",".join(names[w] for w in job["workers"])] if len(names) > 1 else [])
        table.add_row(*map(Text, cells))
    console.print(table)
    ok = sum(job["status"] == JobStatus.OK for job in report.jobs)
    console.print(f"{ok}/{len(report.jobs)} jobs ok")
    for kind, noise in report.noise.items():
        console.print(f"noise ({kind}): the sentinel's speed varied {noise['spread']:.0%} over {noise['probes']:.0f} probes")
    for worker, name in names.items():
        console.print(Text(f"{name if len(names) > 1 else 'worker'}: {worker}"))


@contextlib.contextmanager
def stdout_for_results_only() -> Iterator[None]:
    """While a run executes, whatever is written to standard output (a Ray raylet's notice that a
    worker died, a worker's print) goes to standard error, so `--format json` stays parseable.
    Done on the file descriptor: processes started meanwhile inherit it."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)

