"""`orch plan`: predict every job on every candidate placement, choose, and schedule the batch."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from orchestrator.cost.candidates import candidates
from orchestrator.cost.model import TASK_OVERHEAD_S, Hardware, Prediction, predict
from orchestrator.errors import EnvironmentUnavailable, InputError
from orchestrator.ops import ITEMSIZE
from orchestrator.ops import get as get_op
from orchestrator.placement import Placement
from orchestrator.plan.schedule import Option, Slot, balance, list_schedule
from orchestrator.workload.model import AUTO, Job, Workload

INPUT_GENERATION_BYTES_PER_S = 1e9  # synthetic inputs made on the worker (estimate: NumPy RNG)

# A GPU job's host thread waits for the GPU by spinning (torch.cuda.synchronize): it keeps a core
# busy. A CPU job whose thread pool spans every core then has one thread sharing that core, and
# each of its parallel regions waits a scheduler slice for it: on a lent H100 VM the demo's
# 1M-element dot took 8 ms beside the running GPU worker where it takes 28 µs alone, and a 4 MiB
# copy on this 2-core VM takes 8 ms beside one spinning process, 0.3 ms on one thread
# (benchmarks/host_contention.py). A plan with jobs on both leaves each GPU a host core and
# prices (and runs) its CPU jobs on the rest.
HOST_CORES_PER_GPU = 1


_BETTER = {"time": "faster", "cost": "cheaper", "energy": "less energy"}


@dataclass
class JobPlan:
    job: Job
    candidates: list[Prediction]
    chosen: Prediction | None  # None: no placement can run it (each candidate's note says why)
    runner_up: Prediction | None
    reason: str
    slot: Slot | None = None

    @property
    def speedup(self) -> float | None:
        if self.runner_up is None or self.chosen is None:
            return None
        return self.runner_up.predicted_s / self.chosen.predicted_s


@dataclass
class Plan:
    workload: str
    profile: str
    objective: str
    jobs: list[JobPlan] = field(default_factory=list)
    makespan_s: float = 0.0
    cpu_threads: int | None = None  # the cores CPU jobs run on; None: all of them
    notes: list[str] = field(default_factory=list)


# The batch scheduler may move a job off its own best placement to finish the batch sooner, but
# never to one predicted more than this many times slower for it: on a lent H200 the batch
# scheduler sent a 1M-element axpy to the GPU at 152x its CPU time "because the CPU was busy".
MOVE_AT_MOST_SLOWER = 3.0


def busy_s(job: Job, prediction: Prediction) -> float:
    """Wall time a job holds its devices: inputs made, warm-up and timed executions, scheduling."""
    op = get_op(job.op)
    setup = op.working_set_bytes(job.params, ITEMSIZE[job.dtype]) / INPUT_GENERATION_BYTES_PER_S
    repeats = job.repeats if isinstance(job.repeats, int) else AUTO.expected(prediction.predicted_s)
    return setup + (warmups(job, prediction) + repeats) * prediction.predicted_s + TASK_OVERHEAD_S


def warmups(job: Job, prediction: Prediction) -> int:
    """The untimed executions the harness runs at the least: the job's `warmup`, and where it
    warms until warm (a job with a warm-up, every GPU job, `repeats: auto`) until AUTO.warm_agree
    executions agree, within AUTO.warm_budget_s (execute/harness.py, `timed`)."""
    if not (job.warmup > 0 or prediction.placement.device == "gpu" or job.repeats == "auto"):
        return job.warmup
    within_budget = math.ceil(AUTO.warm_budget_s / prediction.predicted_s) if prediction.predicted_s > 0 else AUTO.warm_most
    return job.warmup + min(max(AUTO.warm_agree - job.warmup, 0), within_budget, AUTO.warm_most)


def _reason(chosen: Prediction, runner_up: Prediction | None, infeasible: list[Prediction], objective: str) -> str:
    head = f"{chosen.bound}-bound" + (f" ({chosen.note})" if chosen.feasible and chosen.note else "")
    if runner_up is None:
        if infeasible:
            other = infeasible[0]
            return f"{head}; only feasible placement ({other.placement}: {other.note})"
        return f"{head}; only candidate"
    ratio = runner_up.objective_value(objective) / max(chosen.objective_value(objective), 1e-300)
    transfer = " including transfer" if chosen.terms.get("transfer_s", 0) > 0 or runner_up.terms.get("transfer_s", 0) > 0 else ""
    return f"{head}; {chosen.placement} {ratio:.3g}x {_BETTER[objective]} than {runner_up.placement}{transfer}"


def _job_plan(job: Job, hw: Hardware, objective: str, forced: Placement | None) -> JobPlan:
    preds = [predict(job, placement, hw) for placement in candidates(hw)]
    wanted = forced or job.placement
    if wanted is not None and wanted not in {p.placement for p in preds}:
        preds.append(predict(job, wanted, hw))
    feasible = sorted((p for p in preds if p.feasible), key=lambda p: p.objective_value(objective))
    infeasible = [p for p in preds if not p.feasible]
    if wanted is not None:
        match = next(p for p in preds if p.placement == wanted)
        if not match.feasible:
            raise EnvironmentUnavailable(f"{job.source or job.name}: placement {wanted} cannot run on {hw.name}: {match.note}")
        others = [p for p in feasible if p is not match]
        return JobPlan(job, preds, match, others[0] if others else None, f"{match.bound}-bound; placement {wanted} was forced")
    if not feasible:
        notes = "; ".join(f"{p.placement}: {p.note}" for p in infeasible)
        return JobPlan(job, preds, None, None, f"fits no placement on {hw.name} ({notes})")
    if objective != "time" and feasible[0].objective_value(objective) == float("inf"):
        figure = "price_usd_per_hour" if objective == "cost" else "power figures"
        raise InputError(f"profile {hw.name}: --objective {objective} needs {figure} in the profile",
                         fix=f"add {figure} to the profile, or use --objective time")
    runner_up = feasible[1] if len(feasible) > 1 else None
    return JobPlan(job, preds, feasible[0], runner_up, _reason(feasible[0], runner_up, infeasible, objective))


def make_plan(workload: Workload, hw: Hardware, objective: str = "time", forced: Placement | None = None,
              *, shared_host: bool = True, exclusive: bool = False) -> Plan:
    """Choose per job, then place the batch: the better of (each job at its own best, list-
    scheduled) and (earliest finish among feasible placements) by makespan. The embedded
    cluster (`shared_host`) runs CPU jobs side by side, each on as many cores as it runs
    threads, unless `exclusive` (each CPU job has the whole CPU to itself); an existing
    cluster's CPU is planned one job at a time per node. Where the batch puts jobs on the CPU
    and on real GPUs of the same host, it is planned again with the CPU's cores less one per
    GPU (HOST_CORES_PER_GPU)."""
    side_by_side = shared_host and not exclusive
    plan = _place(workload, hw, objective, forced, side_by_side)
    cores = hw.node.cpu.cores_logical
    reserved = HOST_CORES_PER_GPU * len(hw.gpus)
    devices = {jp.chosen.placement.device for jp in plan.jobs if jp.chosen is not None}
    real = hw.gpus and not any(gpu.stand_in for gpu in hw.gpus)
    if shared_host and real and devices == {"cpu", "gpu"} and cores > reserved:
        fewer = dataclasses.replace(hw, node=hw.node.model_copy(update={"cpu": hw.node.cpu.share(cores - reserved)}))
        plan = _place(workload, fewer, objective, forced, side_by_side)
        plan.cpu_threads = cores - reserved
        plan.notes.append(f"CPU jobs run on {cores - reserved} of {cores} cores: each GPU's worker keeps one for the "
                          "host thread that waits on it")
    return plan


def _place(workload: Workload, hw: Hardware, objective: str, forced: Placement | None, side_by_side: bool) -> Plan:
    """Schedule the batch; `side_by_side`: the CPU's cores are capacity (a one-thread job takes
    one), else the CPU runs one job at a time."""
    plan = Plan(workload.name, hw.name, objective,
                [_job_plan(job, hw, job.objective or objective, forced) for job in workload.jobs])
    gpus, cores = len(hw.gpus), hw.node.cpu.cores_logical if side_by_side else 1
    placed = [(f"{i}", jp) for i, jp in enumerate(plan.jobs) if jp.chosen is not None]

    def option(jp: JobPlan, prediction: Prediction) -> Option:
        return Option(prediction.placement, busy_s(jp.job, prediction), prediction.threads if side_by_side else None)

    def options(jp: JobPlan, every: bool) -> list[Prediction]:
        chosen = [jp.chosen]
        own_objective = jp.job.objective not in (None, "time")  # a job that asked for cost or energy keeps its choice
        if not every or jp.job.placement is not None or forced is not None or own_objective:
            return chosen
        limit = jp.chosen.predicted_s * MOVE_AT_MOST_SLOWER  # never somewhere much slower for it
        rest = [p for p in jp.candidates if p.feasible and p is not jp.chosen and p.predicted_s <= limit]
        return chosen + sorted(rest, key=lambda p: busy_s(jp.job, p))

    chosen = {key: options(jp, objective == "time") for key, jp in placed}
    jobs = [(key, [option(jp, p) for p in chosen[key]]) for key, jp in placed]
    if objective == "time":
        slots = balance(jobs, hw.nodes, gpus, cores_per_node=cores)
    else:
        slots = list_schedule(jobs, hw.nodes, gpus, choose=False, cores_per_node=cores)
    for key, jp in placed:
        jp.slot = slots[key]
        taken = chosen[key][jp.slot.option]
        if taken is not jp.chosen:
            best, jp.chosen, jp.runner_up = jp.chosen, taken, jp.chosen
            ratio = f"{taken.predicted_s / best.predicted_s:.3g}x"
            jp.reason = (f"{taken.bound}-bound; {best.placement} is {ratio} faster but busy; "
                         f"{taken.placement} finishes the batch sooner")
    plan.makespan_s = max((jp.slot.finish_s for _, jp in placed), default=0.0)
    return plan
