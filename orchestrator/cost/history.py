"""The history tier: recorded runs at this very size answer before the model, as StarPU's
history-based performance models do (a table of measured times per task footprint; the
regression only where no footprint matches).

A job's footprint is its op, size parameters, dtype, data and placement. Every timed execution
of every recorded `ok` run of the profile counts (runs marked not to learn from are left out by
the store). The answer is the median of the timings left after dropping those more than
`OUTLIER_MADS` scaled median absolute deviations from the median (one disturbed sample must not
move it: starpu#50), and only with at least `MIN_TIMINGS` of them.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MIN_TIMINGS = 3
OUTLIER_MADS = 3.0
MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution is 0.6745 sigma

Footprint = tuple[str, str, str, str, str]


def footprint(op: str, params: dict[str, Any], dtype: str, data: str, placement: str) -> Footprint:
    return op, json.dumps(params, sort_keys=True), dtype, data, placement


@dataclass(frozen=True)
class History:
    timings: dict[Footprint, tuple[float, ...]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]]) -> History:
        """From the store's job rows (`ResultStore.jobs_for_profile`)."""
        found: dict[Footprint, list[float]] = {}
        for row in rows:
            if row["status"] != "ok" or not row["measured_s"] or not row["placement"]:
                continue
            key = footprint(row["op"], row["params"], row["dtype"] or "float32", row["data"] or "host", row["placement"])
            found.setdefault(key, []).extend(row["times_s"] or [row["measured_s"]])
        return cls({key: tuple(times) for key, times in found.items()})

    def centre(self, key: Footprint) -> float | None:
        """The robust centre of the timings at this footprint, or None with too few."""
        times = self.timings.get(key, ())
        if len(times) < MIN_TIMINGS:
            return None
        middle = statistics.median(times)
        spread = MAD_TO_SIGMA * statistics.median(abs(t - middle) for t in times)
        kept = [t for t in times if abs(t - middle) <= OUTLIER_MADS * spread] if spread > 0 else list(times)
        return statistics.median(kept) if len(kept) >= MIN_TIMINGS else middle
