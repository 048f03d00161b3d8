"""Tiny jobs ride together: several to one engine task.

A Dask task costs its scheduler and worker about 1-4 ms (3.5 ms a task on a 2-core machine for
10,000 dots and small matmuls submitted by hand), far more than a 1,000-element dot takes. orch
predicts every job, so jobs predicted to hold their worker much less than that go into groups of
about GROUP_TARGET_S of predicted work, one engine task each (`worker.run_group`). Each job
still gets its own record, times, status, attempts and retry; a job that fails in a group never
fails its neighbours, and a group whose worker dies re-runs only its unfinished jobs.

The groups are cut so the cluster stays busy: at least two per slot (a worker thread) where
there is enough work, and never more than GROUP_MAX_JOBS jobs (a group's journal stays within
Dask's 1,000 events per topic).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.backends.base import Backend
from orchestrator.cost.model import TASK_OVERHEAD_S
from orchestrator.execute.task import Task
from orchestrator.plan.planner import JobPlan, busy_s

GROUP_JOBS_BELOW_S = 2e-3  # a job predicted to hold its worker for less joins a group
GROUP_TARGET_S = 0.05  # a group fills up to this much predicted work
GROUP_MAX_JOBS = 400
JOB_FLOOR_S = 2e-4  # what running one job costs the harness at least (inputs, check, record)


@dataclass(frozen=True)
class Tiny:
    """A job that may ride in a group: its key, predicted worker time, and what it needs."""

    key: str
    busy_s: float
    shape: tuple[int, int]  # (cores, gpus) of its task: only jobs of one shape ride together


@dataclass
class Group:
    key: str
    shape: tuple[int, int]
    members: list[str] = field(default_factory=list)
    busy_s: float = 0.0


def tiny(busy_s: float) -> bool:
    return busy_s < GROUP_JOBS_BELOW_S


def form(jobs: list[Tiny], slots: int, prefix: str) -> list[Group]:
    """Groups of `jobs` in their order, per shape; a group of one is still a group (its key says
    so), so the caller submits every member of `jobs` through a group."""
    groups: list[Group] = []
    for shape in dict.fromkeys(job.shape for job in jobs):
        members = [job for job in jobs if job.shape == shape]
        total = sum(max(job.busy_s, JOB_FLOOR_S) for job in members)
        target = min(GROUP_TARGET_S, max(total / (2 * max(slots, 1)), JOB_FLOOR_S))
        current: Group | None = None
        for job in members:
            cost = max(job.busy_s, JOB_FLOOR_S)
            full = current is not None and (current.busy_s + cost > target * 1.0001
                                            or len(current.members) >= GROUP_MAX_JOBS)
            if current is None or full:
                current = Group(f"{prefix}-{len(groups)}", shape)
                groups.append(current)
            current.members.append(job.key)
            current.busy_s += cost
    return groups


def dispatch(engine: Backend, jobs: dict[str, JobPlan], task_of: Callable[[JobPlan], Task], threads: int,
             slots: int, run_id: str, exclusive: bool = False) -> None:
    """Submit every job in plan order: tiny ones in groups, the rest one task each, after
    telling the engine what each kind of task should take. Each task holds the cores its jobs
    run threads on (`threads`: every core CPU jobs have; all of them where `exclusive`)."""
    from dask.utils import key_split

    tasks = {key: task_of(jp) for key, jp in jobs.items()}
    held = {key: threads if exclusive else task.threads or threads for key, task in tasks.items()}
    small: list[Tiny] = []
    durations: dict[str, list[float]] = {}
    for key, jp in jobs.items():
        work = busy_s(jp.job, jp.chosen) - TASK_OVERHEAD_S
        if tiny(work):
            small.append(Tiny(key, work, (held[key], jp.chosen.placement.gpus)))
        else:
            durations.setdefault(key_split(key), []).append(work)
    formed = form(small, slots, f"orch-group-{run_id}")
    if formed:
        durations["orch-group"] = [group.busy_s for group in formed]
    engine.expect({prefix: statistics.median(times) for prefix, times in durations.items()})
    leading = {group.members[0]: group for group in formed}
    grouped = {member for group in formed for member in group.members}
    for key, jp in jobs.items():
        if key in leading:
            group = leading[key]
            engine.submit_group(group.key, [(member, tasks[member]) for member in group.members],
                                cores=group.shape[0], gpus=group.shape[1])
        elif key not in grouped:
            engine.submit(key, tasks[key], cores=held[key], gpus=jp.chosen.placement.gpus)
