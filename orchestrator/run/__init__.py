"""`orch run`: plan, execute on a backend, record."""
