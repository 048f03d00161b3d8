"""What the planner minimises (a light module: the CLI imports it at start-up)."""

from __future__ import annotations

import enum


class Objective(str, enum.Enum):
    time = "time"      # predicted seconds
    cost = "cost"      # USD from the profile's price_usd_per_hour
    energy = "energy"  # joules from the profile's power figures
