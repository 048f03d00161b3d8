"""Execute a workload where the plan puts each job, record every result as it arrives.

A run is a session of steps (`Session`): connect to the engine and learn what it can serve, fit
the hardware to it, plan, record the plan, dispatch (gangs first, one at a time, then the rest),
and finish (every attempt, the run's noise, its status, learning from it). A profile's GPUs that
no worker has are dropped (with a note) before planning, and a forced placement the cluster
cannot serve is refused before anything runs (exit 3).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from orchestrator import backends as backend_registry
from orchestrator.backends.base import Capacity, Outcome, TLSFiles, local_gpu_count
from orchestrator.cost.model import Hardware
from orchestrator.errors import InputError, RunInterrupted
from orchestrator.execute.task import Task
from orchestrator.placement import Placement
from orchestrator.plan.planner import JobPlan, Plan, busy_s, make_plan
from orchestrator.results.noise import noise_of, unsteady
from orchestrator.results.status import JobStatus, RunStatus
from orchestrator.results.store import ResultStore, new_run_id
from orchestrator.run import groups
from orchestrator.run.activity import MachineActivity
from orchestrator.run.events import Event, JobDone, Planned, Submitting, Warned
from orchestrator.run.capacity import fit_to_capacity, gang, refuse_impossible
from orchestrator.run.records import contract_job, fields_of, record_histories, resumable, versions
from orchestrator.units import utc_now
from orchestrator.workload.model import Workload

@dataclass(frozen=True)
class RunOptions:
    """How to run a workload: on which engine (`backend`; an existing cluster's `address` and,
    for a tls:// Dask scheduler, the client's `tls` files), at a `forced` placement or the
    planner's choice by `objective`, continuing run `resume`, re-running a job up to `retries`
    times after its worker dies (None: the engine's default, 3), whether to `learn` from it
    (refit the profile's calibration), and whether each CPU job runs `exclusive` (alone on
    every core, as `srun --exclusive`) or side by side with others where it runs one thread."""

    backend: str = "dask"
    address: str | None = None
    tls: TLSFiles | None = None
    forced: Placement | None = None
    objective: str = "time"
    resume: str | None = None
    retries: int | None = None
    learn: bool = True
    exclusive: bool = False  # each CPU job holds every core: none runs beside another


@dataclass
class RunReport:
    run_id: str
    workload: str
    backend: str
    profile: str
    jobs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about the cluster link and the machine, emitted as Warned events
    noise: dict[str, dict[str, float]] = field(default_factory=dict)  # the sentinel's spread, per device kind
    planned_makespan_s: float | None = None  # the plan's: when the last job should finish
    elapsed_s: float | None = None  # measured: from the first submission to the last result

    @property
    def failed(self) -> bool:
        return any(job["status"] != JobStatus.OK for job in self.jobs)


def run_workload(workload: Workload, hw: Hardware, options: RunOptions = RunOptions(), *,
                 store: ResultStore | None = None, on_event: Event | None = None) -> RunReport:
    """Plan, execute and record `workload`; returns every job's outcome (the contract's JSON)."""
    own = store is None
    store = store or ResultStore()
    try:
        run_id = options.resume or new_run_id()
        if options.resume and store.run(options.resume) is None:
            raise InputError(f"--resume: no run '{options.resume}'", fix="`orch runs` lists them")
        lock = store.lock_run(run_id)  # a live run is never resumed by a second process
        try:
            with MachineActivity(run_id) as activity:
                session = Session(workload, hw, options, store, run_id, activity,
                                  on_event or (lambda event: None))
                return session.run()
        finally:
            lock.release()
    finally:
        if own:
            store.close()


def _task(jp: JobPlan, threads: int | None) -> Task:
    """The job as its worker runs it: on one thread where the plan found that faster."""
    job = jp.job
    return Task(job.name, job.op, job.params, job.dtype, jp.chosen.placement, job.data, job.repeats, job.warmup,
                job.seed, jp.chosen.threads or threads, job.retries_on_error)


class Session:
    """One run of one workload, its steps in order (`run`)."""

    def __init__(self, workload: Workload, hw: Hardware, options: RunOptions, store: ResultStore, run_id: str,
                 activity: MachineActivity, emit: Event) -> None:
        self.workload, self.hw, self.options, self.store = workload, hw, options, store
        self.run_id, self.activity, self.emit = run_id, activity, emit
        self.previous = resumable(store, options.resume, workload) if options.resume else {}
        self.engine = backend_registry.get(options.backend, options.address, retries=options.retries, tls=options.tls)
        self.by_key: dict[str, JobPlan] = {}
        self.outcomes: list[Outcome] = []
        self.started = False

    def run(self) -> RunReport:
        try:
            capacity = self.connect()
            notes: list[str] = []
            planned_for = fit_to_capacity(self.hw, capacity, notes, self.options.address)
            if capacity.gpu_workers:
                notes.append(f"GPU workers: {capacity.gpu_workers}")
            plan = make_plan(self.workload, planned_for, self.options.objective, self.options.forced,
                             shared_host=self.options.address is None, exclusive=self.options.exclusive)
            notes += plan.notes
            if plan.cpu_threads:
                self.threads = plan.cpu_threads
            self.report = RunReport(self.run_id, self.workload.name, self.engine.name, self.hw.name, notes=notes,
                                    warnings=self.warnings)
            self.record(plan, planned_for)
            self.dispatch(plan, capacity)
            return self.finish()
        except BaseException as exc:
            if self.started and (self.store.run(self.run_id) or {}).get("status") == RunStatus.RUNNING:
                self.store.finish_run(self.run_id, RunStatus.INTERRUPTED)
            if self.started and isinstance(exc, KeyboardInterrupt) and not isinstance(exc, RunInterrupted):
                raise RunInterrupted(self.run_id, self.workload.path) from None
            raise
        finally:
            self.engine.close()

    def connect(self) -> Capacity:
        """Start or reach the engine and learn what it can serve; a forced placement it cannot
        serve is refused before anything runs (an embedded cluster's, before it starts)."""
        from orchestrator.hardware.cpu import discover_cpu

        self.cores = discover_cpu().cores_logical
        local = self.options.address is None
        if local:
            refuse_impossible(self.options.forced,
                              Capacity(1, self.cores, local_gpu_count(), hosts={"127.0.0.1": ["embedded"]}))
        self.warnings = self.engine.link_warnings()
        for warning in self.warnings:  # said before connecting
            self.emit(Warned(warning))
        capacity = self.engine.start(cores=self.cores, gpus=local_gpu_count() if local else 0)
        refuse_impossible(self.options.forced, capacity)
        for warning in capacity.notes:  # said now, before anything runs
            self.emit(Warned(warning))
        self.warnings += capacity.notes
        self.threads = capacity.cores_per_worker if self.options.address else self.cores
        return capacity

    def record(self, plan: Plan, planned_for: Hardware) -> None:
        """The run and each job in the store before anything is submitted; jobs a resumed run
        finished are kept, jobs no placement fits are skipped."""
        store, run_id = self.store, self.run_id
        rows = [{"name": jp.job.name, "op": jp.job.op, "params": jp.job.params, "dtype": jp.job.dtype,
                 "data": jp.job.data, "placement": str(jp.chosen.placement) if jp.chosen else None,
                 "predicted_s": jp.chosen.predicted_s if jp.chosen else None} for jp in plan.jobs]
        if not self.options.resume:
            store.start_run(run_id, workload=self.workload.name, path=self.workload.path, sha256=self.workload.sha256,
                            profile=self.hw.name, backend=self.engine.name, address=self.options.address, jobs=rows,
                            versions=versions(), learn=self.options.learn, hardware=planned_for.as_data(),
                            makespan_s=plan.makespan_s)
        else:
            store.reopen_run(run_id)
        self.started = True
        self.emit(Planned(run_id, len(plan.jobs), sum(busy_s(jp.job, jp.chosen) for jp in plan.jobs if jp.chosen),
                          self.report.notes))
        for position, jp in enumerate(plan.jobs):
            before = self.previous.get(jp.job.name)
            if before is not None and before.status == JobStatus.OK:
                continue
            if jp.chosen is None:
                store.record_job(run_id, jp.job.name, status=JobStatus.SKIPPED, error=jp.reason, finished=utc_now())
                self.emit(JobDone(jp.job.name, JobStatus.SKIPPED, 0.0))
                continue
            self.by_key[f"orch-{''.join(c for c in jp.job.op if c.isalpha())}-{run_id}-{position}"] = jp
        if self.options.resume:
            for jp in self.by_key.values():
                store.record_job(run_id, jp.job.name, placement=str(jp.chosen.placement),
                                 predicted_s=jp.chosen.predicted_s)
        store.mark_running(run_id, [jp.job.name for jp in self.by_key.values()])
        self.report.planned_makespan_s = plan.makespan_s

    def dispatch(self, plan: Plan, capacity: Capacity) -> None:
        """Gangs (jobs on several workers) one at a time, then the rest at once (tiny ones
        grouped), each batch of results committed as it arrives."""
        self.emit(Submitting(self.run_id))
        self._disturbed(list(self.activity.seen.values()))
        self.engine.ready()
        submitted = time.monotonic()
        gangs = {key: jp for key, jp in self.by_key.items() if gang(jp.chosen.placement, capacity)}
        for key, jp in gangs.items():  # each holds several workers: one at a time, before the rest
            placement = jp.chosen.placement
            # a CPU rank has its worker's cores; the ranks of one node's stand-in GPUs share them
            share = capacity.cores_per_worker if placement.device == "cpu" else max(1, self.threads // placement.gpus)
            self._finished([self.engine.run_gang(key, _task(jp, share), placement)])
        self.engine.share_cores(self.threads)
        groups.dispatch(self.engine, {key: jp for key, jp in self.by_key.items() if key not in gangs},
                        lambda jp: _task(jp, self.threads), self.threads,
                        capacity.cpu_workers * capacity.cores_per_worker, self.run_id, self.options.exclusive)
        for batch in self.engine.results():
            self._finished(batch)
        self.report.elapsed_s = time.monotonic() - submitted

    def finish(self) -> RunReport:
        """Every attempt the engine made, the run's noise and status; learn from it."""
        store, run_id, report = self.store, self.run_id, self.report
        record_histories(store, run_id, self.engine, self.by_key, self.outcomes, self.previous)
        rows = store.jobs(run_id)
        report.jobs = [contract_job(job) for job in rows]
        end = self.engine.probe(self.threads)
        report.noise = noise_of(rows, end)
        self._disturbed(self.activity.check(force=True))
        shaken = unsteady(report.noise)
        for kind, times in shaken.items():
            self._warn(f"the sentinel ran {times:.1f}x slower at one moment of this run than at another ({kind}): the "
                       "machine was disturbed, so this run is not learnt from")
        if self.activity.seen or shaken:
            store.set_learn(run_id, False)  # later refits leave its measurements out too
        store.finish_run(run_id, RunStatus.FAILED if report.failed else RunStatus.DONE, end)
        if (self.options.learn and not self.activity.seen and not shaken
                and any(job["status"] == JobStatus.OK for job in report.jobs)):
            self._learn()
        return report

    def _finished(self, batch: list[Outcome]) -> None:
        self._disturbed(self.activity.check())
        self.outcomes.extend(batch)
        updates = [(self.by_key[o.key].job.name, fields_of(o, self.previous.get(self.by_key[o.key].job.name)))
                   for o in batch]
        self.store.record_jobs(self.run_id, updates)  # durable before anything is reported
        for outcome in batch:
            jp = self.by_key[outcome.key]
            self.emit(JobDone(jp.job.name, JobStatus.OK if outcome.result else JobStatus.FAILED,
                              busy_s(jp.job, jp.chosen)))

    def _disturbed(self, others: list[str]) -> None:
        for other in others:
            self._warn(f"another orch run is active on this machine ({other}): the two measure each other, "
                       "so this run is not learnt from")

    def _warn(self, message: str) -> None:
        self.report.warnings.append(message)
        self.emit(Warned(message))

    def _learn(self) -> None:
        """Feed this run to the profile's calibration (`orch calibrate` does the same on demand)."""
        from orchestrator.cost.refit import refit

        done = refit(self.hw.name, dataclasses.replace(self.hw, calibration=None), self.store)
        if done:
            self.report.notes.append(f"calibration of {self.hw.name} refitted on {done.before['jobs']} recorded jobs: "
                                     f"median error {done.before['median']:.0%} -> {done.after['median']:.0%} "
                                     "(`orch calibrate` for detail)")


def as_contract(report: RunReport) -> dict[str, Any]:
    return {"run_id": report.run_id, "workload": report.workload, "backend": report.backend,
            "profile": report.profile, "warnings": report.warnings, "noise": report.noise,
            "planned_makespan_s": report.planned_makespan_s, "elapsed_s": report.elapsed_s, "jobs": report.jobs}


__all__ = ["RunOptions", "RunReport", "as_contract", "run_workload"]
