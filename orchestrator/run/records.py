"""What a run writes to the store and reads back: a finished job's row, the attempts the engine
made, what a resumed run keeps, the versions a run used, and a job as the contract's JSON gives it."""

from __future__ import annotations

import platform
import time
from typing import Any

from orchestrator import __version__
from orchestrator.backends.base import Backend, Outcome
from orchestrator.errors import InputError
from orchestrator.plan.planner import JobPlan
from orchestrator.results.rows import JobRow
from orchestrator.results.status import CONTRACT_JOB_STATUSES, JobStatus
from orchestrator.results.store import ResultStore
from orchestrator.units import utc_now
from orchestrator.workload.model import Workload

DEATH_REPORT_WAIT_S = 2.0


def versions() -> dict[str, str]:
    """The versions a run used, as installed (read from package metadata: importing torch and
    ray here cost orch's own process 1.4 s)."""
    from importlib import metadata

    found = {"orch": __version__, "python": platform.python_version()}
    for module in ("numpy", "torch", "dask", "distributed", "ray"):
        try:
            found[module] = metadata.version(module)
        except metadata.PackageNotFoundError:
            continue
    return found


def fields_of(outcome: Outcome, before: JobRow | None) -> dict[str, Any]:
    """A finished job's row, as far as the outcome alone tells (`before`: as a resumed run had
    it); engine re-runs are added once the batch is over (`record_histories`)."""
    earlier = before.failures if before else []
    attempts = (before.attempts if before else 0) + max(len(outcome.failures) + (outcome.result is not None), 1)
    failures = earlier + outcome.failures
    if outcome.result is None:
        return {"status": JobStatus.FAILED, "attempts": attempts, "error": outcome.error, "finished": utc_now(),
                "detail": {"error_type": outcome.error_type, "failures": failures}}
    result = outcome.result
    detail = {"check": result.check, "devices": result.devices, "threads": result.threads, "host": result.host}
    known = {"pid": result.pid, "group": result.group, "sentinel": result.sentinel, "cores": result.cores}  # a gang's has no pid nor probes
    return {"status": JobStatus.OK, "measured_s": result.measured_s, "times_s": result.times_s, "attempts": attempts,
            "workers": result.workers, "error": None, "finished": utc_now(),
            "detail": {**detail, **{k: v for k, v in known.items() if v}, "failures": failures}}


def record_histories(store: ResultStore, run_id: str, engine: Backend, by_key: dict[str, JobPlan],
                      outcomes: list[Outcome], previous: dict[str, JobRow]) -> None:
    """Every attempt the engine made, with why each failed one failed: executions lost with a
    dead worker (and what killed it) come from the engine after the batch."""
    executions, deaths = engine.executions(), engine.deaths()
    lost = [o for o in outcomes if o.system or len(o.runs or executions.get(o.key) or []) > 1]

    def unexplained() -> bool:
        return any(f["error_type"] == "WorkerDied" and f["error"].startswith("worker lost")
                   for o in lost for f in engine.history(o, executions, deaths).failures)

    deadline = time.monotonic() + DEATH_REPORT_WAIT_S
    while lost and engine.reports_deaths and unexplained() and time.monotonic() < deadline:
        time.sleep(0.05)  # a nanny reports its worker's exit a moment after the scheduler saw it go
        deaths = engine.deaths()
    updates = []
    for outcome in outcomes:
        name = by_key[outcome.key].job.name
        history = engine.history(outcome, executions, deaths)
        lost = [f for f in history.failures if f["error_type"] == "WorkerDied"]
        if not lost:
            continue  # what was recorded already says it all
        before = previous.get(name)
        row = store.job(run_id, name)
        detail = {**(row.detail if row else {}), "failures": (before.failures if before else []) + history.failures}
        fields: dict[str, Any] = {"attempts": (before.attempts if before else 0) + history.attempts, "detail": detail}
        if outcome.system:
            fields["error"] = (f"{outcome.error_type}: its worker died on each of {len(lost)} attempts; last "
                               f"{lost[-1]['worker']}: {lost[-1]['error']}")
        updates.append((name, fields))
    if updates:
        store.record_jobs(run_id, updates)


def resumable(store: ResultStore, run_id: str, workload: Workload) -> dict[str, JobRow]:
    run = store.run(run_id)
    if run is None:
        raise InputError(f"--resume: no run '{run_id}'", fix="`orch runs` lists them")
    recorded = {job.name: job for job in store.jobs(run_id)}
    if run["workload_sha256"] != workload.sha256:
        raise InputError(f"--resume {run_id}: {workload.path} changed since the run started: "
                         f"{what_changed(recorded, workload)} (sha256 {run['workload_sha256'][:12]} then, "
                         f"{workload.sha256[:12]} now)", fix="restore the file, or start a new run without --resume")
    return recorded


def what_changed(recorded: dict[str, JobRow], workload: Workload) -> str:
    """The jobs added, removed or changed (op, sizes, dtype, data) between the run and the file."""
    now = {job.name: job for job in workload.jobs}

    def listed(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    changed = [name for name, job in now.items() if name in recorded and
               (job.op, job.params, job.dtype, job.data) != (recorded[name].op, recorded[name].params,
                                                             recorded[name].dtype, recorded[name].data)]
    added = [name for name in now if name not in recorded]
    removed = [name for name in recorded if name not in now]
    parts = [f"{label} {listed(names)}" for label, names in (("changed", changed), ("added", added),
                                                              ("removed", removed)) if names]
    return "; ".join(parts) if parts else "no job differs (comments, formatting or repeats/warm-up/seed?)"


def contract_job(row: JobRow) -> dict[str, Any]:
    """The job as the contract's JSON gives it."""
    predicted, measured = row.predicted_s, row.measured_s
    error_pct = (predicted - measured) / measured * 100 if predicted and measured else None
    return {"name": row.name, "op": row.op, "placement": row.placement, "predicted_s": predicted,
            "measured_s": measured, "status": row.status if row.status in CONTRACT_JOB_STATUSES else JobStatus.FAILED,
            "attempts": row.attempts, "workers": row.workers or [], "error": row.error,
            "error_pct": error_pct, "times_s": row.times_s, "dtype": row.dtype, "data": row.data,
            "threads": (row.detail or {}).get("threads"), "cores": (row.detail or {}).get("cores"),
            "failures": row.failures}
