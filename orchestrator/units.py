"""Human formatting of SI quantities for tables (JSON and YAML keep raw numbers), and the one
timestamp form orch writes (ISO 8601, UTC, to the second: 2026-11-27T20:02:44Z)."""

from __future__ import annotations

import datetime as dt


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def si(value: float | None, unit: str, *, binary: bool = False, digits: int = 3) -> str:
    if value is None:
        return "-"
    base = 1024.0 if binary else 1000.0
    prefixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi"] if binary else ["", "k", "M", "G", "T", "P", "E"]
    scaled = float(value)
    index = 0
    while abs(scaled) >= base and index < len(prefixes) - 1:
        scaled /= base
        index += 1
    return f"{scaled:.{digits}g} {prefixes[index]}{unit}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"
