"""`orch ops [NAME]`: every op a workload can name, the catalog's and the installed ones."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator import ops
from orchestrator.ops import user


def listing(name: str | None) -> list[dict[str, Any]]:
    """The ops `orch ops` shows: one (by name, alias, module:attribute or entry point) or all.
    An installed op that cannot be loaded is listed with its error instead of failing the list."""
    if name is not None:
        return [user.describe(ops.get(name))]
    found = [user.describe(ops.get(op)) for op in ops.names()]
    for short, target in sorted(user.installed().items()):
        try:
            found.append(user.describe(ops.get(short)))
        except (KeyError, ValueError) as exc:
            found.append({"name": short, "source": target, "summary": f"cannot load: {exc.args[0]}", "params": {},
                          "dtypes": [], "placements": [], "flops": None})
    return found


SHORT_DTYPES = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}
SHORT_PLACEMENTS = {"cpu": "cpu", "gpu": "gpu", "multi_gpu": "gpu:N", "multi_node": "@K"}


def print_table(found: list[dict[str, Any]], console: Console) -> None:
    """Short cells (an 80-column terminal keeps one line an op); `--format json` has it all."""
    table = Table("op", "parameters", "dtypes", "runs on", "from")
    for op in found:
        params = ", ".join(f"{k}" if v == "required" else f"{k}={v}" for k, v in op["params"].items())
        source = op["source"]
        origin = "catalog" if source == "catalog" else ("module" if op["name"] == source else "entry point")
        table.add_row(Text(op["name"]), Text(params), ",".join(SHORT_DTYPES[d] for d in op["dtypes"]),
                      ",".join(SHORT_PLACEMENTS[p] for p in op["placements"]), origin)
    console.print(table)
    for op in found:
        if len(found) == 1 or op["source"] not in ("catalog", op["name"]):
            console.print(Text(f"{op['name']}: {op['summary']}" + (f" ({op['source']})" if op["source"] != "catalog" else "")
                               + (f"; FLOPs {op['flops']}" if op["flops"] else "")))
