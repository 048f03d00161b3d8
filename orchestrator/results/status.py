"""What a job and a run can be, as the store keeps them and the contract's JSON says them."""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    PENDING = "pending"          # recorded with the plan, not submitted yet
    RUNNING = "running"          # submitted
    OK = "ok"                    # measured and checked
    FAILED = "failed"            # its code raised, its check failed, or its workers kept dying
    SKIPPED = "skipped"          # no feasible placement: never submitted


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"                # every job ok or skipped
    FAILED = "failed"            # at least one job failed
    INTERRUPTED = "interrupted"  # stopped (Ctrl-C, SIGTERM) or its process gone: `--resume` it


# what the contract's job status may be: anything else recorded reads as failed
CONTRACT_JOB_STATUSES = frozenset({JobStatus.OK, JobStatus.FAILED, JobStatus.SKIPPED})
