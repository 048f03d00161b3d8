"""Recorded runs: a SQLite store under ORCH_HOME."""
