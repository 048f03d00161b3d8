"""Learning from measurements: per op family, device kind and dtype, two factors on the model.

    calibrated = a * overhead + max(a * dispatch, b * max(compute, memory)) + transfer + communication

(`dispatch` is the GPU launches that overlap the work; 0 on a CPU.)

`a` and `b` are positive, so more work still never predicts less time (each term is
non-decreasing in the work and both factors multiply non-negative terms). They are fitted to the
recorded runs of one profile in log space (the error that matters is the ratio) with a Huber
loss (residuals past 10% count linearly, so one disturbed measurement cannot drag a fit). A group
whose runs have a single size cannot tell `a` from `b` and gets one factor for both. Which
correction a group gets (none, one shared factor, or both) is chosen by cross-validation: the
one that best predicts the samples it was not fitted on.

Groups: (op, device, dtype) where that dtype has enough runs, and (op, device, "*") pooled over
dtypes, which serves the dtypes never run. Stored in `$ORCH_HOME/calibration/<profile>.yaml`.
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
from orchestrator.safe_yaml import load_file

HUBER_DELTA = 0.1        # log-ratio beyond which a residual counts linearly (about 10%)
MIN_DTYPE_SAMPLES = 3    # runs of one dtype before it gets factors of its own
LOG_RANGE = 7.0          # factors between e^-7 and e^7 (0.0009x to 1100x)
ANY_DTYPE = "*"
MIN_CV_SAMPLES = 3       # fewer: the richest form the sizes allow, without cross-validation
CV_FOLDS = 5
CV_TIE = 1e-4            # mean Huber loss within which a simpler form wins


class Factors(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    op: str
    device: str          # cpu | gpu
    dtype: str           # a dtype, or "*" for every dtype of the op on that device
    samples: int
    sizes: int           # distinct amounts of work among the samples
    overhead: float = Field(gt=0)
    work: float = Field(gt=0)
    form: Literal["none", "one", "two"] = "two"  # the correction cross-validation chose
    median_error_before: float
    median_error_after: float


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: int = 1
    profile: str
    fitted: str
    runs: int
    groups: list[Factors] = Field(default_factory=list)
    _index: dict[tuple[str, str, str], Factors] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        self._index = {(g.op, g.device, g.dtype): g for g in self.groups}

    def factors(self, op: str, device: str, dtype: str) -> Factors | None:
        """This dtype's factors, else the op's on that device pooled over dtypes, else none."""
        return self._index.get((op, device, dtype)) or self._index.get((op, device, ANY_DTYPE))


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
                              yaml.safe_dump(calibration.model_dump(), sort_keys=False))


def _predict(samples: list[Sample], overhead: float, work: float) -> np.ndarray:
    o, d, w, f = _columns(samples)
    return overhead * o + np.maximum(overhead * d, work * w) + f


def _columns(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Overhead, overlapped dispatch, work and fixed seconds of each sample, as arrays."""
    return (np.array([s.overhead_s for s in samples]), np.array([s.dispatch_s for s in samples]),
            np.array([s.work_s for s in samples]), np.array([s.fixed_s for s in samples]))


def _huber(residual: np.ndarray) -> np.ndarray:
    r = np.abs(residual)
    return np.where(r <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (r - 0.5 * HUBER_DELTA))


def fit_group(samples: list[Sample]) -> tuple[float, float]:
    """(overhead factor, work factor) of the form that predicts left-out samples best."""
    return _fit_form(samples, choose_form(samples))


def choose_form(samples: list[Sample]) -> str:
    """The form of correction that predicts samples it was not fitted on best, by k-fold cross-
    validation (leave-one-out up to 5 samples): "none" (the model as it is), "one" (one factor
    for both terms) or "two". One disturbed run of a few sizes (the first job on a fresh worker
    ran 5-7x slow on a 2-core VM) makes a two-factor fit extrapolate wildly; held out, that fit
    loses to a simpler one, and the simpler one is kept. Ties go to the simpler form."""
    forms = ["none", "one"] + (["two"] if _sizes(samples) >= 2 else [])
    if len(samples) < MIN_CV_SAMPLES:
        return forms[-1]
    folds = min(len(samples), CV_FOLDS)
    scores = {}
    for form in forms:
        loss = 0.0
        for k in range(folds):
            train = [s for i, s in enumerate(samples) if i % folds != k]
            test = [s for i, s in enumerate(samples) if i % folds == k]
            predicted = _predict(test, *_fit_form(train, form))
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


def _errors(samples: list[Sample], overhead: float, work: float) -> list[float]:
    predicted = _predict(samples, overhead, work)
    return [abs(p - s.measured_s) / s.measured_s for p, s in zip(predicted, samples, strict=True)]


MAX_FIT_SAMPLES = 600  # per group: the grid search costs 1,681 predictions a sample and step


def _thinned(samples: list[Sample]) -> list[Sample]:
    """At most MAX_FIT_SAMPLES, evenly spread over the list (oldest to newest, every size)."""
    if len(samples) <= MAX_FIT_SAMPLES:
        return samples
    return [samples[i * len(samples) // MAX_FIT_SAMPLES] for i in range(MAX_FIT_SAMPLES)]


def fit(profile: str, samples: list[Sample], runs: int, fitted: str) -> Calibration:
    groups: dict[tuple[str, str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.op, s.device, ANY_DTYPE), []).append(s)
        groups.setdefault((s.op, s.device, s.dtype), []).append(s)
    found: list[Factors] = []
    pooled: dict[tuple[str, str], Factors] = {}  # "*" sorts before every dtype
    for (op, device, dtype), members in sorted(groups.items()):
        if dtype != ANY_DTYPE and len(members) < MIN_DTYPE_SAMPLES:
            continue
        if dtype != ANY_DTYPE and len(members) == pooled[(op, device)].samples:
            found.append(pooled[(op, device)].model_copy(update={"dtype": dtype}))  # the only dtype run
            continue
        fitted_on = _thinned(members)
        form = choose_form(fitted_on)
        overhead, work = _fit_form(fitted_on, form)
        found.append(Factors(op=op, device=device, dtype=dtype, samples=len(members),
                             sizes=_sizes(members), form=form,
                             overhead=round(overhead, 6), work=round(work, 6),
                             median_error_before=round(statistics.median(_errors(members, 1.0, 1.0)), 4),
                             median_error_after=round(statistics.median(_errors(members, overhead, work)), 4)))
        if dtype == ANY_DTYPE:
            pooled[(op, device)] = found[-1]
    return Calibration(profile=profile, fitted=fitted, runs=runs, groups=found)


def apply(terms: dict[str, float], factors: Factors | None) -> dict[str, float]:
    if factors is None:
        return terms
    return {**terms, "overhead_s": terms["overhead_s"] * factors.overhead,
            "dispatch_s": terms["dispatch_s"] * factors.overhead,
            "compute_s": terms["compute_s"] * factors.work, "memory_s": terms["memory_s"] * factors.work}


def summary_errors(samples: list[Sample], calibration: Calibration | None) -> dict[str, float]:
    """Median and 90th percentile of |predicted - measured| / measured over the samples."""
    errors = []
    for s in samples:
        factors = calibration.factors(s.op, s.device, s.dtype) if calibration else None
        errors += _errors([s], *((factors.overhead, factors.work) if factors else (1.0, 1.0)))
    return {"jobs": len(errors), "median": statistics.median(errors) if errors else math.nan,
            "p90": float(np.percentile(errors, 90)) if errors else math.nan}
