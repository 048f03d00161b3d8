"""Learning from measurements, in two tiers above the model, for each (op, device, dtype):

* **history**: recorded runs at this very size (`history.py`). `basis: history`.
* **fit**: two factors on the model's terms, fitted to the recorded runs of the op on that
  device and dtype at any size,

      calibrated = a * overhead + max(a * dispatch, b * max(compute, memory)) + transfer + communication

  (`dispatch` is the GPU launches that overlap the work; 0 on a CPU). This is a regression over
  the op's size parameters through the model's own formulas (time = a * overhead(p) + b * work(p)
  for any number of parameters: m, n, k of a GEMM alike). `a` and `b` are positive, so more work
  never predicts less time. Fitted in log space (the error that matters is the ratio) with a
  Huber loss (residuals past 10% count linearly, so one disturbed measurement cannot drag a fit).
  A group whose runs have a single size cannot tell `a` from `b` and gets one factor for both.
  Of three sizes or more, the group may instead be a **curve**: the measured time at each
  size, read between sizes by FLOPs in log-log (a regression over the op's size through its
  recorded points, as StarPU's history-based models do; it bends where the model's shape is
  wrong: a dot in cache at 1M elements and in DRAM at 16M, a Cholesky between panel sizes),
  never less time for more work; beyond its sizes, the work factor each end implies.
  Which correction a group gets (none, one shared factor, both, or the curve) is chosen by
  cross-validation: a form must predict the sizes it was not fitted on.
  More than FIT_HOLD_DECADES outside the work the group was fitted on, `b` fades back to 1 (the
  model) over FIT_REACH_DECADES decades, and a prediction never goes below the device's roofline
  (flops / its fastest theoretical peak). `basis: fit`.

A LAPACK op's runs at sizes of different alignment (a Cholesky of 1024 runs 3-4x slower per FLOP
than one of 1000 on MKL) make one curve: each time divided by the penalty the profile measured
for its alignment (alignment.py), each prediction multiplied by its own; the factors apply to
the model's terms, which carry the penalty already.

A dtype is learnt from its own runs only: float64 never borrows float32's factors. Stored in
`$ORCH_HOME/calibration/<profile>.yaml`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from orchestrator import paths
from orchestrator.cost.history import Measured, history_key
from orchestrator.curves import log_interpolate
from orchestrator.safe_yaml import load_file

FIT_HOLD_DECADES = 1.0   # the work factor holds this many decades outside the work it was fitted on,
FIT_REACH_DECADES = 2.0  # then fades to none over this many more
HUBER_DELTA = 0.1        # log-ratio beyond which a residual counts linearly (about 10%)
MIN_DTYPE_SAMPLES = 1    # one recorded job of a dtype lets the fit answer for it at nearby sizes
LOG_RANGE = 7.0          # factors between e^-7 and e^7 (0.0009x to 1100x)
ANY_DTYPE = "*"
MIN_CV_SAMPLES = 2       # fewer: one factor for both terms, without cross-validation
CV_FOLDS = 5
CV_TIE = 1e-4            # mean Huber loss within which a simpler form wins
CURVE_LOW, CURVE_HIGH = 1 / 30, 30.0  # the work factors a curve's ends may imply
# The error a correction learnt at some sizes of one run makes at other sizes of another (noise,
# the run's own state, each size's quirks): corrections small against it count by R / (R + 1) of
# themselves from R runs (`shrink_weight`; docs/benchmarks.md 2.15)
SHRINK_NOISE = 0.3


class Factors(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    op: str
    device: str          # cpu | gpu
    dtype: str           # a dtype, or "*" for every dtype of the op on that device
    samples: int
    sizes: int           # distinct amounts of work among the samples
    overhead: float = Field(gt=0)
    work: float = Field(gt=0)
    form: Literal["none", "one", "two", "curve"] = "two"  # the correction cross-validation chose
    # form "curve": the measured time at each size fitted on ([FLOPs, seconds], by FLOPs), read
    # between them in log-log; beyond them the work factor each end implies (`work_low` below,
    # `work` above), held and faded as the factors are
    curve: list[tuple[float, float]] = Field(default_factory=list)
    work_low: float | None = None
    median_error_before: float
    median_error_after: float
    work_min_s: float | None = None  # the modelled work of the samples fitted on (None: no limit)
    work_max_s: float | None = None
    runs: int = 1          # distinct runs among the samples
    # the share of the correction predictions take, in log space: the time is the model's
    # x (corrected / model) ** weight (`shrink_weight`; 1: all of it, as files from before)
    weight: float = Field(default=1.0, gt=0, le=1)

    def work_at(self, work_s: float) -> tuple[float, bool]:
        """The work factor at this much modelled work, and whether the fit still answers there:
        itself within FIT_HOLD_DECADES of the fitted range, then fading to 1 (the model) over
        FIT_REACH_DECADES more. The reach widens with a large factor so the faded time (factor x work) still never
        falls as the work grows."""
        below = self.work_min_s and self.work_max_s and work_s < math.sqrt(self.work_min_s * self.work_max_s)
        held = self.work_low if self.work_low and below else self.work  # a curve's ends: the nearer one
        if self.work_min_s is None or self.work_max_s is None or work_s <= 0:
            return held, True
        if self.work_min_s <= work_s <= self.work_max_s:
            return held, True
        edge = self.work_min_s if work_s < self.work_min_s else self.work_max_s
        decades = abs(math.log10(work_s / edge)) - FIT_HOLD_DECADES
        if decades <= 0:
            return held, True
        reach = max(FIT_REACH_DECADES, 1.01 * abs(math.log(held)) / math.log(10))
        weight = max(0.0, 1.0 - decades / reach)
        return math.exp(weight * math.log(held)), weight > 0

    def time_at(self, flops: float) -> float | None:
        """A curve's time for this much work, where its sizes reach (else None)."""
        if not self.curve or not self.curve[0][0] <= flops <= self.curve[-1][0]:
            return None
        return log_interpolate(self.curve, flops)


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: int = 1
    profile: str
    fitted: str
    runs: int
    groups: list[Factors] = Field(default_factory=list)
    history: list[Measured] = Field(default_factory=list)
    _index: dict[tuple[str, str, str], Factors] = PrivateAttr(default_factory=dict)
    _measured: dict[tuple[str, ...], Measured] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        self._index = {(g.op, g.device, g.dtype): g for g in self.groups}
        self._measured = {history_key(m.op, m.placement, m.dtype, m.data, m.params, m.threads): m for m in self.history}

    def factors(self, op: str, device: str, dtype: str) -> Factors | None:
        """This dtype's own factors (a hand-written group for every dtype, "*", where there is
        one), else none: a dtype is never learnt from another's runs."""
        return self._index.get((op, device, dtype)) or self._index.get((op, device, ANY_DTYPE))

    def measured(self, op: str, placement: str, dtype: str, data: str, params: dict[str, Any],
                 one_thread: bool | None = None) -> Measured | None:
        """This size's history on one thread (True), on more (False), or either (None: the job
        has no choice of thread count); one whose count was not recorded answers for either."""
        more = 2  # any count over one: history_key keeps them as one
        counts = {True: (1, None), False: (more, None), None: (more, 1, None)}[one_thread]
        return next(filter(None, (self._measured.get(history_key(op, placement, dtype, data, params, n)) for n in counts)), None)


@dataclass(frozen=True)
class Sample:
    """One recorded job, re-predicted without calibration, split into the model's terms."""

    op: str
    device: str
    dtype: str
    overhead_s: float
    work_s: float
    fixed_s: float
    measured_s: float
    flops: float
    dispatch_s: float = 0.0
    penalty: float = 1.0  # its terms' alignment x shape penalty (Hardware.penalty): a curve divides it out
    run: str = ""         # the run that recorded it


def calibration_path(profile: str) -> Path:
    folder = paths.folder(paths.orch_home() / "calibration", "calibration store")
    return folder / f"{paths.safe_name(profile, 'profile')}.yaml"


def load(profile: str) -> Calibration | None:
    """The saved factors of `profile`; a damaged file is a one-line ProfileError naming it."""
    from pydantic import ValidationError

    from orchestrator.errors import ProfileError
    from orchestrator.validation import field_path, first_problem

    path = calibration_path(profile)
    if not path.exists():
        return None
    try:
        return Calibration.model_validate(load_file(path, ProfileError))
    except ValidationError as exc:
        loc, message = first_problem(exc, Calibration)
        raise ProfileError(f"{path}: {field_path(loc)}: {message}", fix="run `orch calibrate` to fit it again") from None


def save(calibration: Calibration) -> Path:
    import yaml

    return paths.write_atomic(calibration_path(calibration.profile),
                              yaml.safe_dump(calibration.model_dump(mode="json"), sort_keys=False))


def _predict(samples: list[Sample], overhead: float, work: float | np.ndarray) -> np.ndarray:
    o, d, w, f = _columns(samples)
    return overhead * o + np.maximum(overhead * d, work * w) + f


def _predict_form(test: list[Sample], train: list[Sample], form: str) -> np.ndarray:
    """`test` predicted by the correction of `form` fitted on `train`."""
    if form != "curve":
        return _predict(test, *_fit_form(train, form))
    knots, low, high = fit_curve(train)
    group = Factors(op="", device="", dtype="", samples=0, sizes=0, overhead=1.0, work=high, work_low=low,
                    form="curve", curve=knots, median_error_before=0, median_error_after=0)
    return np.array([_curve_time(group, s) or float(_predict([s], 1.0, low if s.flops < knots[0][0] else high)[0])
                     for s in test])


def _curve_time(group: Factors, s: Sample) -> float | None:
    """A curve's time for this sample, with the sample's alignment penalty on."""
    seconds = group.time_at(s.flops)
    return None if seconds is None else seconds * s.penalty


def fit_curve(samples: list[Sample]) -> tuple[list[tuple[float, float]], float, float]:
    """The measured time at each size of the samples (the median over that size's, each divided
    by its alignment penalty), cleaned from the smallest up so that more work never takes less
    time; and the work factor the
    smallest and the largest size imply, (measured - overhead - fixed) / work with the model's
    overhead as it is, between CURVE_LOW and CURVE_HIGH: what answers beyond the sizes."""
    by_size: dict[float, list[Sample]] = {}
    for s in samples:
        by_size.setdefault(round(math.log(s.flops), 3), []).append(s)
    knots: list[tuple[float, float]] = []
    for size in sorted(by_size):
        seconds = statistics.median(s.measured_s / s.penalty for s in by_size[size])
        flops = statistics.median(s.flops for s in by_size[size])
        knots.append((flops, max(seconds, knots[-1][1]) if knots else seconds))

    def implied(members: list[Sample], seconds: float) -> float:
        """The work factor that gives the knot's (cleaned) time at that size."""
        factors = [(seconds * s.penalty - s.overhead_s - s.fixed_s) / s.work_s for s in members if s.work_s > 0]
        return min(max(statistics.median(factors), CURVE_LOW), CURVE_HIGH) if factors else 1.0

    ends = sorted(by_size)
    return knots, implied(by_size[ends[0]], knots[0][1]), implied(by_size[ends[-1]], knots[-1][1])


def _columns(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Overhead, overlapped dispatch, work and fixed seconds of each sample, as arrays."""
    return (np.array([s.overhead_s for s in samples]), np.array([s.dispatch_s for s in samples]),
            np.array([s.work_s for s in samples]), np.array([s.fixed_s for s in samples]))


def _huber(residual: np.ndarray) -> np.ndarray:
    r = np.abs(residual)
    return np.where(r <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (r - 0.5 * HUBER_DELTA))


def fit_group(samples: list[Sample]) -> tuple[float, float]:
    """(overhead factor, work factor) of the form that predicts left-out samples best (a curve:
    the model's overhead and the factor at the largest size)."""
    form = choose_form(samples)
    return (1.0, fit_curve(samples)[2]) if form == "curve" else _fit_form(samples, form)


def choose_form(samples: list[Sample]) -> str:
    """The form of correction that predicts samples it was not fitted on best, by k-fold cross-
    validation (leave-one-out up to 5 samples): "none" (the model as it is), "one" (one factor
    for both terms) or "two". One disturbed run of a few sizes (the first job on a fresh worker
    ran 5-7x slow on a 2-core VM) makes a two-factor fit extrapolate wildly; held out, that fit
    loses to a simpler one, and the simpler one is kept. Ties go to the simpler form. Two samples
    choose between the model and one factor (a two-factor fit passes through both exactly); one
    gets one factor, untested."""
    forms = ["none", "one"] + (["two"] if _sizes(samples) >= 2 else []) + (["curve"] if _sizes(samples) >= 3 else [])
    if len(samples) < MIN_CV_SAMPLES:
        return forms[min(len(forms), 3) - 1]
    folds = min(len(samples), CV_FOLDS)
    scores = {}
    for form in forms:
        loss = 0.0
        for k in range(folds):
            train = [s for i, s in enumerate(samples) if i % folds != k]
            test = [s for i, s in enumerate(samples) if i % folds == k]
            predicted = _predict_form(test, train, form)
            loss += float(_huber(np.log(predicted / np.array([s.measured_s for s in test]))).sum())
        scores[form] = loss / len(samples)
    best = min(scores.values())
    return next(form for form in forms if scores[form] <= best + CV_TIE)


def _fit_form(samples: list[Sample], form: str) -> tuple[float, float]:
    """Factors minimising the Huber loss of log(predicted / measured): a 41 x 41 grid over both
    log-factors (or 41 over one shared factor), then finer grids around the best point."""
    if form == "none":
        return 1.0, 1.0
    o, d, w, f = _columns(samples)
    m = np.log(np.array([s.measured_s for s in samples]))
    tied = form == "one" or _sizes(samples) < 2 or not np.any(o + d)
    cx = cy = 0.0
    span = LOG_RANGE
    for _ in range(4):
        xs = np.linspace(cx - span, cx + span, 41)
        if tied:
            a = np.exp(xs)[:, None]
            pred = a * o + np.maximum(a * d, a * w) + f
            cx = cy = float(xs[int(np.argmin(_huber(np.log(pred) - m).sum(axis=1)))])
        else:
            ys = np.linspace(cy - span, cy + span, 41)
            a, b = np.exp(xs)[:, None, None], np.exp(ys)[None, :, None]
            pred = a * o + np.maximum(a * d, b * w) + f
            i, j = np.unravel_index(int(np.argmin(_huber(np.log(pred) - m).sum(axis=2))), (41, 41))
            cx, cy = float(xs[i]), float(ys[j])
        span /= 8
    return math.exp(cx), math.exp(cy)


def _sizes(samples: list[Sample]) -> int:
    """Distinct amounts of work (to 0.1%) among the samples."""
    return len({round(math.log(s.flops), 3) for s in samples})


def _errors(predicted: Any, samples: list[Sample]) -> list[float]:
    return [abs(p - s.measured_s) / s.measured_s for p, s in zip(predicted, samples, strict=True)]


def shrink_weight(corrections: list[float], sizes: int, runs: int) -> float:
    """The share of a group's correction predictions take: at least runs / (runs + 1), more as
    its typical size g (the median |log(corrected / model)| over its samples) grows against
    SHRINK_NOISE: g^2 / (g^2 + SHRINK_NOISE^2 / sizes). A correction of 10% learnt from one run
    of three sizes keeps half; one of 2x keeps 0.94 of itself (1.92x)."""
    g = statistics.median(abs(math.log(c)) for c in corrections) if corrections else 0.0
    strong = g * g / (g * g + SHRINK_NOISE ** 2 / max(sizes, 1)) if g > 0 else 0.0
    return round(max(runs / (runs + 1), strong), 4)


def shrunk(corrected: Any, model: Any, weight: float) -> Any:
    """The model's time moved `weight` of the way (in log space) to the corrected one."""
    return model * (corrected / model) ** weight


MAX_FIT_SAMPLES = 600  # per group: the grid search costs 1,681 predictions a sample and step


def _thinned(samples: list[Sample]) -> list[Sample]:
    """At most MAX_FIT_SAMPLES, evenly spread over the list (oldest to newest, every size)."""
    if len(samples) <= MAX_FIT_SAMPLES:
        return samples
    return [samples[i * len(samples) // MAX_FIT_SAMPLES] for i in range(MAX_FIT_SAMPLES)]


def fit(profile: str, samples: list[Sample], runs: int, fitted: str,
        history: list[Measured] | None = None) -> Calibration:
    """Factors for each (op, device, dtype) with MIN_DTYPE_SAMPLES recorded jobs or more."""
    groups: dict[tuple[str, str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.op, s.device, s.dtype), []).append(s)
    found: list[Factors] = []
    for (op, device, dtype), members in sorted(groups.items()):
        if len(members) < MIN_DTYPE_SAMPLES:
            continue
        fitted_on = _thinned(members)
        form = choose_form(fitted_on)
        curve, low = [], None
        if form == "curve":
            curve, low, work = fit_curve(fitted_on)
            overhead, low, work = 1.0, round(low, 6), work
        else:
            overhead, work = _fit_form(fitted_on, form)
        works = [s.work_s for s in members if s.work_s > 0]
        model = _predict(members, 1.0, 1.0)
        full = _predict_form(members, fitted_on, form) if curve else _predict(members, overhead, work)
        taught_by = len({s.run for s in members})
        weight = shrink_weight(list(full / model), _sizes(members), taught_by) if form != "none" else 1.0
        after = shrunk(full, model, weight)
        found.append(Factors(op=op, device=device, dtype=dtype, samples=len(members),
                             sizes=_sizes(members), form=form, curve=curve, work_low=low,
                             overhead=round(overhead, 6), work=round(work, 6),
                             median_error_before=round(statistics.median(_errors(model, members)), 4),
                             median_error_after=round(statistics.median(_errors(after, members)), 4),
                             work_min_s=min(works) if works else None, work_max_s=max(works) if works else None,
                             runs=taught_by, weight=weight))
    return Calibration(profile=profile, fitted=fitted, runs=runs, groups=found, history=history or [])


def apply(terms: dict[str, float], factors: Factors | None, work: float | None = None) -> dict[str, float]:
    """The terms with the factors on: `work` overrides the group's work factor (faded)."""
    if factors is None:
        return terms
    work = factors.work if work is None else work
    return {**terms, "overhead_s": terms["overhead_s"] * factors.overhead,
            "dispatch_s": terms["dispatch_s"] * factors.overhead,
            "compute_s": terms["compute_s"] * work, "memory_s": terms["memory_s"] * work}


def summary_errors(samples: list[Sample], calibration: Calibration | None) -> dict[str, float]:
    """Median and 90th percentile of |predicted - measured| / measured over the samples."""
    errors = []
    for s in samples:
        factors = calibration.factors(s.op, s.device, s.dtype) if calibration else None
        predicted = model = float(_predict([s], 1.0, 1.0)[0])
        if factors is not None:
            curve = _curve_time(factors, s)
            corrected = curve if curve is not None else float(
                _predict([s], factors.overhead, factors.work_at(s.work_s)[0])[0])
            predicted = shrunk(corrected, model, factors.weight)
        errors += _errors([predicted], [s])
    return {"jobs": len(errors), "median": statistics.median(errors) if errors else math.nan,
            "p90": float(np.percentile(errors, 90)) if errors else math.nan}
