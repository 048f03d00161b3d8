"""Execute a workload where the plan puts each job, record every result as it arrives.

The plan is made for what the cluster can serve: a profile's GPUs that no worker has are
dropped (with a note) before planning, and a forced placement the cluster cannot serve is
refused before anything runs (exit 3).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator import __version__
from orchestrator import backends as backend_registry
from orchestrator.backends.base import Backend, Capacity, Outcome, TLSFiles, local_gpu_count
from orchestrator.cost.model import Hardware
from orchestrator.errors import InputError, RunInterrupted
from orchestrator.execute.task import Task
from orchestrator.placement import Placement
from orchestrator.plan.planner import JobPlan, busy_s, make_plan
from orchestrator.results.noise import noise_of
from orchestrator.results.status import CONTRACT_JOB_STATUSES, JobStatus, RunStatus
from orchestrator.results.store import ResultStore, new_run_id, now
from orchestrator.run import groups
from orchestrator.run.activity import MachineActivity
from orchestrator.run.capacity import fit_to_capacity, gang, refuse_impossible
from orchestrator.workload.model import Workload

DEATH_REPORT_WAIT_S = 2.0
Event = Callable[[str, dict[str, Any]], None]  # ("planned" | "job", details)


@dataclass
class RunReport:
    run_id: str
    workload: str
    backend: str
    profile: str
    jobs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about the cluster link, emitted as "warning" events
    noise: dict[str, dict[str, float]] = field(default_factory=dict)  # the sentinel's spread, per device kind
    planned_makespan_s: float | None = None  # the plan's: when the last job should finish
    elapsed_s: float | None = None  # measured: from the first submission to the last result

    @property
    def failed(self) -> bool:
        return any(job["status"] != JobStatus.OK for job in self.jobs)


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


def _task(jp: JobPlan, threads: int | None) -> Task:
    job = jp.job
    return Task(job.name, job.op, job.params, job.dtype, jp.chosen.placement, job.data, job.repeats, job.warmup,
                job.seed, threads, job.retries_on_error)


def run_workload(workload: Workload, hw: Hardware, *, backend: str = "dask", address: str | None = None,
                 forced: Placement | None = None, objective: str = "time", store: ResultStore | None = None,
                 on_event: Event | None = None, resume: str | None = None, retries: int | None = None,
                 tls: TLSFiles | None = None, learn: bool = True) -> RunReport:
    """Plan, execute and record `workload`; returns every job's outcome (the contract's JSON).
    `retries`: re-runs of a job after its worker dies (default 3); `tls`: client certificates
    for a tls:// Dask scheduler; `learn`: refit the profile's calibration with this run."""
    own = store is None
    store = store or ResultStore()
    try:
        emit = on_event or (lambda kind, details: None)
        run_id = resume or new_run_id()
        if resume and store.run(resume) is None:
            raise InputError(f"--resume: no run '{resume}'", fix="`orch runs` lists them")
        lock = store.lock_run(run_id)  # a live run is never resumed by a second process
        try:
            with MachineActivity(run_id) as activity:
                return _run_locked(workload, hw, store, emit, run_id, activity, backend=backend, address=address,
                                   forced=forced, objective=objective, resume=resume, retries=retries, tls=tls,
                                   learn=learn)
        finally:
            lock.release()
    finally:
        if own:
            store.close()


def _run_locked(workload: Workload, hw: Hardware, store: ResultStore, emit: Event, run_id: str,
                activity: MachineActivity, *, backend: str,
                address: str | None, forced: Placement | None, objective: str, resume: str | None,
                retries: int | None, tls: TLSFiles | None, learn: bool) -> RunReport:
    previous = _resumable(store, resume, workload) if resume else {}
    engine = backend_registry.get(backend, address, retries=retries, tls=tls)
    from orchestrator.hardware.cpu import discover_cpu

    cores = discover_cpu().cores_logical
    started = False
    if address is None:  # what an embedded cluster will have is known before starting it
        refuse_impossible(forced, Capacity(1, cores, local_gpu_count(), hosts={"127.0.0.1": ["embedded"]}))
    warnings = engine.link_warnings()
    for warning in warnings:  # said before connecting
        emit("warning", {"message": warning})
    capacity = engine.start(cores=cores, gpus=local_gpu_count() if address is None else 0)
    try:
        refuse_impossible(forced, capacity)
        for warning in capacity.notes:  # said now, before anything runs
            emit("warning", {"message": warning})
        warnings += capacity.notes
        notes: list[str] = []
        planned_for = fit_to_capacity(hw, capacity, notes, address)
        if capacity.gpu_workers:
            notes.append(f"GPU workers: {capacity.gpu_workers}")
        plan = make_plan(workload, planned_for, objective, forced)
        report = RunReport(run_id, workload.name, engine.name, hw.name, notes=notes, warnings=warnings)
        rows = [{"name": jp.job.name, "op": jp.job.op, "params": jp.job.params, "dtype": jp.job.dtype,
                 "data": jp.job.data, "placement": str(jp.chosen.placement) if jp.chosen else None,
                 "predicted_s": jp.chosen.predicted_s if jp.chosen else None} for jp in plan.jobs]
        if not resume:
            store.start_run(run_id, workload=workload.name, path=workload.path, sha256=workload.sha256,
                            profile=hw.name, backend=engine.name, address=address, jobs=rows, versions=versions(),
                            learn=learn, hardware=hardware_data(planned_for), makespan_s=plan.makespan_s)
        else:
            store.reopen_run(run_id)
        started = True
        emit("planned", {"run_id": run_id, "jobs": len(plan.jobs), "notes": notes,
                         "busy_s": sum(busy_s(jp.job, jp.chosen) for jp in plan.jobs if jp.chosen)})
        threads = capacity.cores_per_worker if address else cores
        by_key: dict[str, JobPlan] = {}
        for position, jp in enumerate(plan.jobs):
            if previous.get(jp.job.name, {}).get("status") == JobStatus.OK:
                continue
            if jp.chosen is None:
                store.record_job(run_id, jp.job.name, status=JobStatus.SKIPPED, error=jp.reason, finished=now())
                emit("job", {"name": jp.job.name, "status": JobStatus.SKIPPED, "busy_s": 0.0})
                continue
            by_key[f"orch-{''.join(c for c in jp.job.op if c.isalpha())}-{run_id}-{position}"] = jp
        if resume:
            for jp in by_key.values():
                store.record_job(run_id, jp.job.name, placement=str(jp.chosen.placement), predicted_s=jp.chosen.predicted_s)
        store.mark_running(run_id, [jp.job.name for jp in by_key.values()])
        emit("submitting", {"run_id": run_id})
        outcomes: list[Outcome] = []

        def disturbed(others: list[str]) -> None:
            for other in others:
                message = (f"another orch run is active on this machine ({other}): the two measure each other, "
                           "so this run is not learnt from")
                report.warnings.append(message)
                emit("warning", {"message": message})

        disturbed(list(activity.seen.values()))

        def finished(batch: list[Outcome]) -> None:
            disturbed(activity.check())
            outcomes.extend(batch)
            updates = [(by_key[o.key].job.name, _fields(o, previous.get(by_key[o.key].job.name, {}))) for o in batch]
            store.record_jobs(run_id, updates)  # durable before anything is reported
            for outcome in batch:
                jp = by_key[outcome.key]
                emit("job", {"name": jp.job.name, "status": JobStatus.OK if outcome.result else JobStatus.FAILED,
                             "busy_s": busy_s(jp.job, jp.chosen)})

        report.planned_makespan_s = plan.makespan_s
        submitted = time.monotonic()
        gangs = {key: jp for key, jp in by_key.items() if gang(jp.chosen.placement, capacity)}
        for key, jp in gangs.items():  # each holds several workers: one at a time, before the rest
            placement = jp.chosen.placement
            # a CPU rank has its worker's cores; the ranks of one node's stand-in GPUs share them
            share = capacity.cores_per_worker if placement.device == "cpu" else max(1, threads // placement.gpus)
            finished([engine.run_gang(key, _task(jp, share), placement)])
        groups.dispatch(engine, {key: jp for key, jp in by_key.items() if key not in gangs},
                        lambda jp: _task(jp, threads), threads, capacity.cpu_workers * capacity.cores_per_worker,
                        run_id)
        for batch in engine.results():
            finished(batch)
        report.elapsed_s = time.monotonic() - submitted
        _record_histories(store, run_id, engine, by_key, outcomes, previous)
        rows = store.jobs(run_id)
        report.jobs = [_contract_job(job) for job in rows]
        end = engine.probe(threads)
        report.noise = noise_of(rows, end)
        disturbed(activity.check(force=True))
        if activity.seen:
            store.set_learn(run_id, False)  # later refits leave its measurements out too
        store.finish_run(run_id, RunStatus.FAILED if report.failed else RunStatus.DONE, end)
        if learn and not activity.seen and any(job["status"] == JobStatus.OK for job in report.jobs):
            _learn(hw, store, report)
        return report
    except BaseException as exc:
        if started and (store.run(run_id) or {}).get("status") == RunStatus.RUNNING:
            store.finish_run(run_id, RunStatus.INTERRUPTED)
        if started and isinstance(exc, KeyboardInterrupt) and not isinstance(exc, RunInterrupted):
            raise RunInterrupted(run_id, workload.path) from None
        raise
    finally:
        engine.close()


def hardware_data(hw: Hardware) -> dict[str, Any]:
    """What a run was planned for, kept with it: the node profile, node count and network."""
    return {"name": hw.name, "node": hw.node.model_dump(mode="json"), "nodes": hw.nodes,
            "network": hw.network.model_dump(mode="json") if hw.network else None}


def hardware_from(data: dict[str, Any]) -> Hardware:
    from orchestrator.profile.model import Network, NodeProfile

    return Hardware(data["name"], NodeProfile.model_validate(data["node"]), data["nodes"],
                    Network.model_validate(data["network"]) if data.get("network") else None)


def _learn(hw: Hardware, store: ResultStore, report: RunReport) -> None:
    """Feed this run to the profile's calibration (`orch calibrate` does the same on demand)."""
    from orchestrator.cost.refit import refit

    uncalibrated = Hardware(hw.name, hw.node, hw.nodes, hw.network)
    done = refit(hw.name, uncalibrated, store)
    if done:
        report.notes.append(f"calibration of {hw.name} refitted on {done.before['jobs']} recorded jobs: median error "
                            f"{done.before['median']:.0%} -> {done.after['median']:.0%} (`orch calibrate` for detail)")


def _fields(outcome: Outcome, before: dict[str, Any]) -> dict[str, Any]:
    """A finished job's row, as far as the outcome alone tells; engine re-runs are added once
    the batch is over (`_record_histories`)."""
    earlier = (before.get("detail") or {}).get("failures", [])
    attempts = (before.get("attempts") or 0) + max(len(outcome.failures) + (outcome.result is not None), 1)
    failures = earlier + outcome.failures
    if outcome.result is None:
        return {"status": JobStatus.FAILED, "attempts": attempts, "error": outcome.error, "finished": now(),
                "detail": {"error_type": outcome.error_type, "failures": failures}}
    result = outcome.result
    detail = {"check": result.check, "devices": result.devices, "threads": result.threads, "host": result.host,
              "pid": result.pid, "group": result.group, "sentinel": result.sentinel or None}
    return {"status": JobStatus.OK, "measured_s": result.measured_s, "times_s": result.times_s, "attempts": attempts,
            "workers": result.workers, "error": None, "finished": now(),
            "detail": {**{k: v for k, v in detail.items() if v is not None}, "failures": failures}}


def _record_histories(store: ResultStore, run_id: str, engine: Backend, by_key: dict[str, JobPlan],
                      outcomes: list[Outcome], previous: dict[str, dict[str, Any]]) -> None:
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
        before = previous.get(name, {})
        row = store.job(run_id, name) or {}
        detail = {**(row.get("detail") or {}), "failures": (before.get("detail") or {}).get("failures", []) + history.failures}
        fields: dict[str, Any] = {"attempts": (before.get("attempts") or 0) + history.attempts, "detail": detail}
        if outcome.system:
            fields["error"] = (f"{outcome.error_type}: its worker died on each of {len(lost)} attempts; last "
                               f"{lost[-1]['worker']}: {lost[-1]['error']}")
        updates.append((name, fields))
    if updates:
        store.record_jobs(run_id, updates)


def _resumable(store: ResultStore, run_id: str, workload: Workload) -> dict[str, dict[str, Any]]:
    run = store.run(run_id)
    if run is None:
        raise InputError(f"--resume: no run '{run_id}'", fix="`orch runs` lists them")
    recorded = {job["name"]: job for job in store.jobs(run_id)}
    if run["workload_sha256"] != workload.sha256:
        raise InputError(f"--resume {run_id}: {workload.path} changed since the run started: "
                         f"{_what_changed(recorded, workload)} (sha256 {run['workload_sha256'][:12]} then, "
                         f"{workload.sha256[:12]} now)", fix="restore the file, or start a new run without --resume")
    return recorded


def _what_changed(recorded: dict[str, dict[str, Any]], workload: Workload) -> str:
    """The jobs added, removed or changed (op, sizes, dtype, data) between the run and the file."""
    now = {job.name: job for job in workload.jobs}

    def listed(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    changed = [name for name, job in now.items() if name in recorded and
               (job.op, job.params, job.dtype, job.data) != (recorded[name]["op"], recorded[name]["params"],
                                                             recorded[name]["dtype"], recorded[name]["data"])]
    added = [name for name in now if name not in recorded]
    removed = [name for name in recorded if name not in now]
    parts = [f"{label} {listed(names)}" for label, names in (("changed", changed), ("added", added),
                                                              ("removed", removed)) if names]
    return "; ".join(parts) if parts else "no job differs (comments, formatting or repeats/warm-up/seed?)"


def _contract_job(row: dict[str, Any]) -> dict[str, Any]:
    predicted, measured = row["predicted_s"], row["measured_s"]
    error_pct = (predicted - measured) / measured * 100 if predicted and measured else None
    return {"name": row["name"], "op": row["op"], "placement": row["placement"], "predicted_s": predicted,
            "measured_s": measured, "status": row["status"] if row["status"] in CONTRACT_JOB_STATUSES else JobStatus.FAILED,
            "attempts": row["attempts"], "workers": row["workers"] or [], "error": row["error"],
            "error_pct": error_pct, "times_s": row["times_s"], "dtype": row["dtype"], "data": row["data"],
            "failures": (row["detail"] or {}).get("failures", [])}


def as_contract(report: RunReport) -> dict[str, Any]:
    return {"run_id": report.run_id, "workload": report.workload, "backend": report.backend,
            "profile": report.profile, "warnings": report.warnings, "noise": report.noise,
            "planned_makespan_s": report.planned_makespan_s, "elapsed_s": report.elapsed_s, "jobs": report.jobs}


__all__ = ["RunReport", "as_contract", "run_workload"]
