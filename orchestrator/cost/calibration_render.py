"""`orch calibrate`'s table: each group's factors and its error before and after."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from orchestrator.cost.refit import Refit


def print_table(done: Refit, console: Console) -> None:
    cal = done.calibration
    table = Table(title=f"calibration of {cal.profile}: {done.before['jobs']} recorded jobs from {cal.runs} run(s)",
                  title_justify="left")
    for column, justify in (("op", "left"), ("device", "left"), ("dtype", "left"), ("jobs", "right"),
                            ("sizes", "right"), ("form", "left"), ("overhead x", "right"), ("work x", "right"), ("taken", "right"),
                            ("median error before", "right"), ("after", "right")):
        table.add_column(column, justify=justify)
    for g in cal.groups:
        table.add_row(g.op, g.device, g.dtype, str(g.samples), str(g.sizes), g.form, f"{g.overhead:.3g}",
                      f"{g.work_low:.3g}..{g.work:.3g}" if g.curve and g.work_low else f"{g.work:.3g}",
                      f"{g.weight:.0%}" if g.form != "none" else "-",
                      f"{g.median_error_before:.1%}", f"{g.median_error_after:.1%}")
    console.print(table)
    if cal.history:
        dropped = sum(m.dropped for m in cal.history)
        console.print(f"history: {len(cal.history)} job sizes measured at least 3 times answer for themselves "
                      f"({sum(m.samples for m in cal.history)} executions, {dropped} outliers dropped)")
    console.print(f"all jobs: median error {done.before['median']:.1%} -> {done.after['median']:.1%}, "
                  f"p90 {done.before['p90']:.1%} -> {done.after['p90']:.1%}  (saved to {done.path})")
