"""Predicted time of one job on one placement (docs/cost-model.md has every formula):

    predicted = overhead + max(compute, memory, dispatch) + transfer + communication

`dispatch` is the GPU launches that overlap the device's work.

`bound` names the largest term. A candidate whose working set does not fit, whose dtype the
device lacks, or that the op cannot run on is infeasible, with a note.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from orchestrator.cost import calibration as learned
from orchestrator.cost import comms, rates, shapes
from orchestrator.cost.terms import TERMS, WORK_TERMS, bound_of, combine
from orchestrator.cost.terms import work as _work
from orchestrator.cost.alignment import classes, faded, measured_at, measured_penalties, split_references
from orchestrator.cost.feasibility import feasibility, per_device
from orchestrator.cost.history import by_history
from orchestrator.ops import ITEMSIZE, Rate, Split
from orchestrator.ops import get as get_op
from orchestrator.placement import Placement
from orchestrator.profile.model import GpuProfile, Network, NodeProfile
from orchestrator.workload.model import Job

TASK_OVERHEAD_S = 1e-3      # Dask: about 1 ms of scheduler time per task (Dask best-practices docs)
# An op without reference runs of its own (a user's) borrows another's measured scale, but never
# one that says it runs faster than the GEMM curve: batched_matmul's small references beat the
# curve (a batch of 128x128 products keeps both cores busy, where one 128^3 product does not),
# which a user's kernel need not do; borrowed, that made attention predicted 2-3x fast.
BORROWED_SCALE_AT_LEAST = 1.0
# float64 gets a scale of its own over sizes where its references cover this many (`float64_scales`)
FLOAT64_OWN_SCALE = 3
ONE_THREAD = "cpu:1"  # the kind of a CPU's references timed on one thread (Hardware.op_scales)


@dataclass(frozen=True)
class Hardware:
    """What a plan is made for: one node profile, K identical nodes, the network between them."""

    name: str
    node: NodeProfile
    nodes: int = 1
    network: Network | None = None
    calibration: learned.Calibration | None = None  # factors learned from recorded runs
    spread: tuple[str, ...] = ("cpu", "gpu")  # devices whose multi-node placements are offered

    @functools.cached_property
    def gpus(self) -> list[GpuProfile]:
        return self.node.usable_gpus

    def as_data(self) -> dict[str, Any]:
        """All of it as plain data (kept with each run; `from_data` gives it back whole)."""
        return {"name": self.name, "node": self.node.model_dump(mode="json"), "nodes": self.nodes,
                "network": self.network.model_dump(mode="json") if self.network else None,
                "calibration": self.calibration.model_dump(mode="json") if self.calibration else None,
                "spread": list(self.spread)}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Hardware:
        """What `as_data` wrote (a run recorded before calibration and spread were kept has neither)."""
        return cls(data["name"], NodeProfile.model_validate(data["node"]), data["nodes"],
                   Network.model_validate(data["network"]) if data.get("network") else None,
                   learned.Calibration.model_validate(data["calibration"]) if data.get("calibration") else None,
                   tuple(data.get("spread") or cls.spread))

    @functools.cached_property
    def op_scales(self) -> dict[tuple[str, str], list[tuple[float, float]]]:
        """(device kind, op) -> [(the model's work seconds, measured / modelled work)] of the op's
        kernel at its reference sizes (profile `op_benchmarks`, all but float64's), sorted by
        work. Derived from the model without calibration: the scale says what the profile
        measured, and calibration learns on top of it (deriving the scale from a calibrated model
        cancels the factor)."""
        return self._reference_scales(float64=False, at_least=1)

    def _reference_scales(self, float64: bool, at_least: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
        """(device kind, op) -> the monotone scale through one level's unaligned references
        (float64's or every other dtype's), where they give `at_least` points."""
        scales: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for kind, op, benches in self._op_benchmarks():
            found = (self._scale_point(kind, op, bench.params, bench.dtype, bench.data, bench.measured_s)
                     for bench in split_references(kind, get_op(op), benches, float64)[0])
            points = [point for point in found if point]
            if len(points) >= at_least:
                scales[(kind, op)] = rates.monotone_scale(sorted(points))
        return scales

    @functools.cached_property
    def fastest_references(self) -> dict[tuple[str, str, str], float]:
        """(device kind, op, dtype) -> the most FLOP/s the op's references ran (`rates.gemm_ceiling`)."""
        fastest: dict[tuple[str, str, str], float] = {}
        for kind, device in [("cpu", self.node.cpu), *(("gpu", gpu) for gpu in self.gpus[:1])]:
            for op, benches in device.op_benchmarks.items():
                for bench in benches:
                    key = (kind, op, bench.dtype)
                    fastest[key] = max(get_op(op).flops(bench.params) / bench.measured_s, fastest.get(key, 0.0))
        return fastest

    @functools.cached_property
    def float64_ratios(self) -> dict[tuple[str, str], float]:
        """(device kind, op) -> how much float64's measured scale exceeds the other dtypes' at the
        same reference sizes (the median over the op's float64 references): float64 keeps the
        shape of the op's scale over sizes and takes its own level. A float64 factorization does
        not run at float64's GEMM rate as float32's does at float32's (cuSOLVER on an H100: qr
        and svd 2x slower than float32's scale said, eigh 2x faster)."""
        ratios: dict[tuple[str, str], float] = {}
        for kind, op, benches in self._op_benchmarks():
            found = [self._scale_point(kind, op, bench.params, "float64", bench.data, bench.measured_s)
                     for bench in split_references(kind, get_op(op), benches, float64=True)[0]]
            # read where a float64 job of these sizes reads the scale: at its own work
            found = [point[1] / self.op_scale(kind, op, point[0]) for point in found if point]
            if found and (kind, op) in self.op_scales:
                ratios[(kind, op)] = statistics.median(found)
        return ratios

    @functools.cached_property
    def alignment_penalties(self) -> dict[tuple[str, str, str], dict[str, dict[int, float]]]:
        """(device kind, op, float32 or float64) -> {dimension: {alignment: how much slower than
        the op's scale at that level its references of that alignment ran}} (cost/alignment.py)."""
        penalties: dict[tuple[str, str, str], dict[str, dict[int, float]]] = {}
        for kind, op, benches in self._op_benchmarks():
            for level in ("float32", "float64"):
                points = []
                for bench in split_references(kind, get_op(op), benches, level == "float64")[1]:
                    if ratio := self._over_scale(kind, op, bench, level):  # its shape's part is not its alignment's
                        ratio /= self.shape_factor(kind, op, bench.params, level)
                        points.append((classes(get_op(op), bench.params), ratio))
                if found := measured_penalties(points):
                    penalties[(kind, op, level)] = found
        return penalties

    @functools.cached_property
    def alignment_sizes(self) -> dict[tuple[str, str, str], dict[str, dict[int, float]]]:
        """As `alignment_penalties`: the size each class's penalty was measured at (`faded`)."""
        return {(kind, op, level): measured_at(get_op(op), split_references(kind, get_op(op), benches, level == "float64")[1])
                for kind, op, benches in self._op_benchmarks() for level in ("float32", "float64")}

    @functools.cached_property
    def shape_ratios(self) -> dict[tuple[str, str, str], list[shapes.Point]]:
        """(device kind, op, float32 or float64) -> (m, n, how much slower than the op's scale at
        that level) of its references across tall shapes (cost/shapes.py)."""
        found: dict[tuple[str, str, str], list[shapes.Point]] = {}
        for kind, op, benches in self._op_benchmarks(shape=True):
            for bench in benches:
                level = "float64" if bench.dtype == "float64" else "float32"
                if ratio := self._over_scale(kind, op, bench, level):
                    found.setdefault((kind, op, level), []).append((bench.params["m"], bench.params["n"], ratio))
        return found

    def shape_factor(self, kind: str, op: str, params: dict[str, Any], dtype: str = "float32") -> float:
        """What a job of this shape runs over the op's scale on these threads, as the references
        across shapes measured it (1 where none were: cost/shapes.py); float64's own, else float32's."""
        level = "float64" if dtype == "float64" and (kind, op, "float64") in self.shape_ratios else "float32"
        return shapes.factor(self.shape_ratios.get((kind, op, level), []), params)

    def _over_scale(self, kind: str, op: str, bench: Any, level: str) -> float | None:
        """How much slower than the op's scale at that level a reference ran (None: not priced)."""
        point = self._scale_point(kind, op, bench.params, bench.dtype, bench.data, bench.measured_s)
        return point[1] / self.op_scale(kind, op, point[0], level) if point and (kind, op) in self.op_scales else None

    def penalty(self, kind: str, op: str, params: dict[str, Any], dtype: str = "float32") -> float:
        """What a job's work pays beyond the op's scale on these threads: its shape's factor times
        its alignment's penalty."""
        return self.alignment_penalty(kind, op, params, dtype) * self.shape_factor(kind, op, params, dtype)

    def alignment_penalty(self, kind: str, op: str, params: dict[str, Any], dtype: str = "float32") -> float:
        """The measured penalties of these parameters' dimensions' alignments, multiplied (1 where
        none was measured): float64's own where its aligned references were timed, else float32's;
        on one thread that thread count's where measured (float32's), else all the cores'."""
        level = "float64" if dtype == "float64" and (kind, op, "float64") in self.alignment_penalties else "float32"
        found = self.alignment_penalties.get((kind, op, level), {})
        if kind == ONE_THREAD and (not found or (dtype == "float64" and level != "float64")):
            return self.alignment_penalty("cpu", op, params, dtype)
        dims = get_op(op).aligned_sizes(params)
        at = self.alignment_sizes.get((kind, op, level), {}) if len(dims) == 1 else {}  # square ones fade
        return math.prod(faded(found.get(dim, {}).get(size, 1.0), at.get(dim, {}).get(size), dims[dim])
                         for dim, size in classes(get_op(op), params).items())

    def _op_benchmarks(self, shape: bool = False) -> list[tuple[str, str, list[Any]]]:
        """(kind, op, references): a CPU's references on one thread make a kind of their own;
        those across shapes (`shape`) are apart from the rest."""
        found = [("gpu", op, benches) for op, benches in (self.gpus[0].op_benchmarks if self.gpus else {}).items()]
        for op, benches in self.node.cpu.op_benchmarks.items():
            found.append(("cpu", op, [bench for bench in benches if bench.threads != 1]))
            found.append((ONE_THREAD, op, [bench for bench in benches if bench.threads == 1]))
        return [(kind, op, mine) for kind, op, benches in found if (mine := [b for b in benches if b.shape == shape])]

    def _raw(self, kind: str, op: str, params: dict[str, Any], dtype: str, data: str) -> Prediction:
        job = Job(name="reference", op=op, params=params, dtype=dtype, data=data)
        return predict(job, Placement("gpu", 1) if kind == "gpu" else Placement("cpu"), self, scaled=False,
                       calibrated=False)

    def _scale_point(self, kind: str, op: str, params: dict[str, Any], dtype: str, data: str,
                     measured_s: float) -> tuple[float, float] | None:
        """(modelled work, measured / modelled work) of one reference run; None where the model
        cannot price it."""
        raw = self._raw(kind, op, params, dtype, data)
        work = _work(raw.terms) if raw.feasible else 0.0
        if work <= 0:
            return None
        fixed, at = raw.predicted_s - work, work / get_op(op).rounds(params)  # the scale's axis: one round
        if measured_s > fixed:
            return at, (measured_s - fixed) / work
        return at, measured_s / raw.predicted_s  # the model's fixed costs alone exceed it: scale it all

    def op_scale(self, kind: str, op: str, work_s: float, dtype: str = "float32") -> float:
        """The measured scale at this much modelled work: log-linear between reference points,
        flat beyond them; float64 at its own level (`float64_ratios`) where it was measured."""
        if dtype == "float64" and (kind, op) in self.float64_scales:
            return rates.scale_at(self.float64_scales[(kind, op)], work_s)
        points = self.op_scales.get((kind, op))
        scale = rates.scale_at(points, work_s) if points else 1.0
        if dtype == "float64":
            scale *= self.float64_ratios.get((kind, op), 1.0)
        return scale

    @functools.cached_property
    def float64_scales(self) -> dict[tuple[str, str], list[tuple[float, float]]]:
        """(device kind, op) -> float64's own scale over sizes, as `op_scales` is float32's, where
        the op's float64 references cover FLOAT64_OWN_SCALE sizes (a CPU's: every size); with
        fewer (a GPU's two) float64 takes float32's shape at its own level (`float64_ratios`).
        float64's efficiency does not follow float32's over sizes: on 12 replays of two held-out
        runs with six profiles (2-core VM), its own scale took the float64 jobs' median error
        from 9.9% to 7.8% and the p90 from 22.0% to 20.2% (medians of the 12; docs/benchmarks.md
        section 2.10)."""
        return self._reference_scales(float64=True, at_least=FLOAT64_OWN_SCALE)


@dataclass
class Prediction:
    placement: Placement
    feasible: bool
    predicted_s: float = math.inf
    bound: str = "compute"
    note: str | None = None
    terms: dict[str, float] = field(default_factory=dict)
    cost_usd: float | None = None
    energy_j: float | None = None
    basis: str = "model"  # which tier answered: history, fit or model (cost/calibration.py)
    threads: int | None = None  # 1: a CPU job runs on one thread, faster so; None: on the cores it is given
    penalty: float = 1.0  # what its work pays beyond the scale on its threads: alignment x shape (Hardware.penalty)

    def objective_value(self, objective: str) -> float:
        value = {"time": self.predicted_s, "cost": self.cost_usd, "energy": self.energy_j}[objective]
        return math.inf if value is None or not self.feasible else value


def _infeasible(placement: Placement, note: str) -> Prediction:
    return Prediction(placement, feasible=False, note=note)


def predict(job: Job, placement: Placement, hw: Hardware, scaled: bool = True, calibrated: bool = True,
            threads: int | None = None) -> Prediction:
    """Predicted seconds of one execution of `job` on `placement` (the contract's measured_s).
    `scaled=False` leaves out the op's measured scale (how the scale itself is derived);
    `calibrated=False` the factors learned from recorded runs (how those are fitted). A CPU job
    runs on one thread where its op's one-thread references say that is faster, or where its
    history at this size says so (`history.by_history`: the references cannot see every
    shape); `threads` 1 or another count asks for that one (a recorded run's; 0: the cores it
    is given)."""
    chosen = _predicted(job, placement, hw, scaled, calibrated, threads)
    if (threads is None and chosen.feasible and calibrated and hw.calibration and placement.device == "cpu"
            and hw.calibration.measured(job.op, str(placement), job.dtype, job.data, job.params) is not None):
        # the other count from its own history, else the model (the fit tier learnt the counts run)
        other = _predicted(job, placement, hw, scaled, calibrated, 0 if chosen.threads == 1 else 1, fit=False)
        if other.feasible and other.threads != chosen.threads:
            picked = by_history(chosen, other)
            if picked.basis != "history":
                recorded = other if picked is chosen else chosen
                tried, ran = ("one thread", "all its cores") if picked.threads == 1 else ("all its cores", "one thread")
                picked.note = f"trying {tried}: {ran} took {recorded.predicted_s * 1e3:.3g} ms"
            return picked
    return chosen


def _predicted(job: Job, placement: Placement, hw: Hardware, scaled: bool, calibrated: bool,
               threads: int | None, fit: bool = True) -> Prediction:
    problem = feasibility(job, placement, hw)
    if problem:
        return _infeasible(placement, problem)
    op = get_op(job.op)
    p, itemsize = job.params, ITEMSIZE[job.dtype]
    device = hw.gpus[0] if placement.device == "gpu" else hw.node.cpu
    kind = rates.kind_of(device)
    split = op.split is not Split.NONE and placement.devices > 1
    share = placement.devices if split else 1

    terms, one_thread, penalty, single, why = dict.fromkeys(TERMS, 0.0), False, 1.0, 0.0, None
    serial, overlapped = rates.call_overhead_s(device, op.launches(p), op.rate, eager=op.eager_torch)
    terms["overhead_s"] = serial  # a gang's every rank is its own process, launching on its own device
    terms["dispatch_s"] = overlapped
    if op.rate is Rate.PYTHON:
        terms["compute_s"] = p["n"] * rates.python_element_s(hw.node.cpu)
    else:
        work_per_call = op.flops(p) / share / op.calls(p, kind)
        size = (work_per_call / 2) ** (1 / 3)  # the square GEMM with that work
        rate = rates.compute_rate(op.rate, device, job.dtype, size)
        if rate is None:
            return _infeasible(placement, f"{getattr(device, 'name', 'cpu')} has no {job.dtype} support")
        terms["compute_s"] = op.flops(p) / (share * rate)
        replicated = op.replicated_elements(p) * itemsize
        traffic = per_device(op.traffic_bytes(p, itemsize), replicated, share)
        working_set = per_device(op.working_set_bytes(p, itemsize), replicated, share)
        terms["memory_s"] = traffic / rates.memory_bandwidth(device, working_set if op.cache_resident else None)
        if scaled:
            like = op.scaled_like(terms["compute_s"], terms["memory_s"])
            at = _work(terms) / op.rounds(p)  # its own scale is read at one round's work
            scale = hw.op_scale(kind, like, at if like == op.name else _work(terms), job.dtype)
            if like != op.name:  # borrowed: see BORROWED_SCALE_AT_LEAST
                scale = max(scale, BORROWED_SCALE_AT_LEAST)
            else:
                penalty = hw.penalty(kind, op.name, p, job.dtype)
                single = _one_thread_scale(hw, op.name, placement, at, job.dtype)
                alone = hw.penalty(ONE_THREAD, op.name, p, job.dtype)
                if single and (threads == 1 or (threads is None and single * alone < scale * penalty)):
                    if threads is None:
                        why = f"one thread: all its cores {scale * penalty / (single * alone):.2g}x slower"
                    scale, penalty, one_thread = single, alone, True
                scale *= penalty
            for term in WORK_TERMS:
                terms[term] *= scale
            if op.rate is Rate.GEMM:  # no faster than the largest GEMM or the op's own references
                fastest = hw.fastest_references.get((kind, op.name, job.dtype), 0.0)
                ceiling = max(rates.gemm_ceiling(device, job.dtype), fastest)
                terms["compute_s"] = max(terms["compute_s"], op.flops(p) / (share * ceiling))
        # sorting compares and softmax exponentiates rather than multiply-adds: their own measured
        # rates, on top of any FLOPs (0 where a profile measured none)
        terms["compute_s"] += rates.selection_s(device, op.selections(p)) / share
        terms["compute_s"] += rates.softmax_s(device, op.softmax_elements(p)) / share
    if placement.devices > 1 and op.rate is Rate.TRAINING:  # DistributedDataParallel, every step
        terms["overhead_s"] += op.collectives(p) * rates.ddp_step_s(device)
    terms["transfer_s"] = comms.transfer_s(op, p, itemsize, placement, hw.gpus[0] if hw.gpus else None, job.data)
    if placement.devices > 1:
        link = comms.link_of(placement, hw.network, hw.gpus[0] if hw.gpus else None, hw.node.cpu)
        terms["communication_s"] = comms.communication_s(op, p, itemsize, placement, link)

    # a job that may run on one thread or on more has a history for each (None: it has no choice)
    threads_run = one_thread if single else None
    terms, basis = (_learned(job, placement, hw, terms, device, share, penalty, threads_run, fit)
                    if calibrated and hw.calibration else (terms, "model"))
    predicted = combine(terms)
    prediction = Prediction(placement, True, predicted, bound_of(terms), note=why, terms=terms, basis=basis,
                            threads=1 if one_thread else None, penalty=penalty)
    if job.data == "device" and not hw.gpus:
        prediction.note = "data: device on a machine without a GPU: inputs start in host memory"
    price = hw.node.price_usd_per_hour
    prediction.cost_usd = predicted / 3600 * price * placement.nodes if price else None
    prediction.energy_j = predicted * rates.power_w(hw.node, placement)
    if job.max_cost_usd is not None and prediction.cost_usd is not None and prediction.cost_usd > job.max_cost_usd:
        prediction.feasible = False
        prediction.note = f"predicted ${prediction.cost_usd:.4g} exceeds max_cost_usd {job.max_cost_usd}"
    return prediction


def _one_thread_scale(hw: Hardware, op: str, placement: Placement, work_s: float, dtype: str) -> float:
    """The op's measured scale on one thread of the CPU at this much work (0: not measured, or a
    gang's or a GPU's job). qr of 2048 x 256 took 11 ms on one thread of this VM, 28 on both."""
    if placement.device != "cpu" or placement.devices > 1 or (ONE_THREAD, op) not in hw.op_scales:
        return 0.0
    return hw.op_scale(ONE_THREAD, op, work_s, dtype)


def _learned(job: Job, placement: Placement, hw: Hardware, terms: dict[str, float], device: rates.Device,
             share: int, penalty: float, one_thread: bool | None, fit: bool = True) -> tuple[dict[str, float], str]:
    """The terms as the tiers above the model answer (calibration.py): recorded runs at this
    very size (history), else the op's factors on this device and dtype where they still reach
    this much work (fit), never faster than the device's roofline; else the model's."""
    assert hw.calibration is not None
    measured = hw.calibration.measured(job.op, str(placement), job.dtype, job.data, job.params, one_thread)
    if measured is not None:
        scale = measured.centre_s / combine(terms)
        return {name: value * scale for name, value in terms.items()}, "history"
    factors = hw.calibration.factors(job.op, placement.device, job.dtype) if fit else None
    if factors is None:
        return terms, "model"
    flops = get_op(job.op).flops(job.params)
    curve = factors.time_at(flops) if placement.devices == 1 else None  # the curve's sizes ran on one device
    if curve is not None:
        curve *= penalty  # the curve has it divided out
        fitted = {name: value * curve / combine(terms) for name, value in terms.items()}
    else:
        work, reaches = factors.work_at(max(terms["compute_s"], terms["memory_s"]))
        if not reaches:
            return terms, "model"
        fitted = learned.apply(terms, factors, work)
        peak = max(device.theoretical_peak_flops.values(), default=0.0)
        floor = flops / share / peak if peak else 0.0
        fitted["compute_s"] = max(fitted["compute_s"], floor)  # no faster than the device can go
    # the share of the correction it takes (calibration.shrink_weight)
    corrected = combine(fitted)
    scale = learned.shrunk(corrected, combine(terms), factors.weight) / corrected
    return {name: value * scale for name, value in fitted.items()}, "fit"
