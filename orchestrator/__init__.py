"""orch: where should this run, and how long will it take?"""

__version__ = "0.1.0"
