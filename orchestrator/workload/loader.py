"""Load a workload file: safe YAML, pydantic validation, defaults, sweep expansion.

Every problem is a `WorkloadError` whose message is `FILE: field.path: what is wrong`.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator import ops
from orchestrator.errors import WorkloadError, did_you_mean
from orchestrator.placement import Placement
from orchestrator.safe_yaml import load_file
from orchestrator.validation import field_path, first_problem
from orchestrator.workload.model import SWEEPABLE_COMMON, Job, JobCommon, Workload, WorkloadFile, job_model

MAX_JOBS = 100_000
_RESERVED_IN_DEFAULTS = ("name", "op", "sweep")


def _fail(source: str, loc: list[Any], message: str) -> WorkloadError:
    return WorkloadError(f"{source}: {field_path(loc)}: {message}")


def _validate(model: type, data: dict[str, Any], source: str, prefix: list[Any],
              sweep_key: str | None = None) -> Any:
    """Validate `data`; an error is reported under `prefix` (or at the swept value itself)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc, message = first_problem(exc, model)
        if sweep_key is not None and loc[:1] == [sweep_key]:
            loc = []
        raise _fail(source, [*prefix, *loc], message) from exc


def _check_defaults(defaults: dict[str, Any], source: str) -> None:
    allowed = set(JobCommon.model_fields) | {p for name in ops.names() for p in ops.get(name).params}
    for key in defaults:
        if key in _RESERVED_IN_DEFAULTS:
            raise _fail(source, ["defaults", key], "not allowed in defaults (each job sets its own)")
        if key not in allowed:
            raise _fail(source, ["defaults", key], f"unknown key; {did_you_mean(key, allowed)}")
    _validate(JobCommon, {k: v for k, v in defaults.items() if k in JobCommon.model_fields}, source, ["defaults"])


def _sweep_axes(job: dict[str, Any], op: ops.Op, source: str, where: list[Any]) -> dict[str, list[Any]]:
    sweep = job.pop("sweep", None)
    if sweep is None:
        return {}
    if not isinstance(sweep, dict) or not sweep:
        raise _fail(source, [*where, "sweep"], "must be a mapping of field: [values, ...]")
    allowed = [*op.params, *SWEEPABLE_COMMON]
    for key, values in sweep.items():
        if key not in allowed:
            raise _fail(source, [*where, "sweep", key], f"cannot sweep '{key}' for {op.name}; {did_you_mean(str(key), allowed)}")
        if not isinstance(values, list) or not values:
            raise _fail(source, [*where, "sweep", key], "must be a non-empty list of values")
    return sweep


def _expand(raw: dict[str, Any], defaults: dict[str, Any], index: int, source: str) -> list[Job]:
    where: list[Any] = ["jobs", index]
    job = dict(raw)
    if "op" not in job:
        raise _fail(source, [*where, "op"], f"required field is missing; one of: {', '.join(ops.names())}")
    try:
        op = ops.get(str(job["op"]))
    except KeyError as exc:
        raise _fail(source, [*where, "op"], exc.args[0]) from None
    job["op"] = op.name
    sweep = _sweep_axes(job, op, source, where)
    merged = {k: v for k, v in defaults.items() if k in JobCommon.model_fields or k in op.params}
    merged.update(job)
    model = job_model(op.name)
    for key, values in sweep.items():  # each swept value on its own, so the error names it
        for j, value in enumerate(values):
            _validate(model, {**merged, key: value}, source, [*where, "sweep", key, j], sweep_key=key)
    points = list(itertools.product(*sweep.values())) if sweep else [()]
    if len(points) > MAX_JOBS:
        raise _fail(source, [*where, "sweep"], f"expands to {len(points)} jobs, over the {MAX_JOBS} limit")
    jobs = []
    for point in points:
        valid = _validate(model, {**merged, **dict(zip(sweep, point))}, source, where)
        name = valid.name
        if sweep:
            name += "[" + ",".join(f"{k}={getattr(valid, k)}" for k in sweep) + "]"
        jobs.append(Job(
            name=name, op=op.name, params={p: getattr(valid, p) for p in op.params},
            dtype=valid.dtype, repeats=valid.repeats, warmup=valid.warmup, data=valid.data,
            placement=None if valid.placement == "auto" else Placement.parse(valid.placement), seed=valid.seed, objective=valid.objective,
            max_cost_usd=valid.max_cost_usd, retries_on_error=valid.retries_on_error, source=field_path(where)))
    return jobs


def parse(data: Any, source: str, sha256: str = "") -> Workload:
    if data is None:
        raise WorkloadError(f"{source}: empty file; a workload needs version: 1, name and jobs")
    if not isinstance(data, dict):
        raise WorkloadError(f"{source}: a workload is a YAML mapping with version, name and jobs "
                            f"(got {type(data).__name__})")
    if data.get("version", 1) != 1 and "version" in data:
        raise WorkloadError(f"{source}: version: unsupported version {data['version']!r}; this orch reads version 1")
    top = _validate(WorkloadFile, data, source, [])
    defaults = top.defaults or {}
    _check_defaults(defaults, source)
    workload = Workload(name=top.name, path=source, sha256=sha256)
    seen: dict[str, str] = {}
    for index, raw in enumerate(top.jobs):
        for job in _expand(raw, defaults, index, source):
            if job.name in seen:
                raise _fail(source, ["jobs", index, "name"], f"duplicate job name '{job.name}' (also in {seen[job.name]})")
            seen[job.name] = job.source
            workload.jobs.append(job)
            if len(workload.jobs) > MAX_JOBS:
                raise WorkloadError(f"{source}: jobs: more than {MAX_JOBS} jobs after sweeps")
    return workload


def load(path: str | Path) -> Workload:
    """Read and validate a workload file; nothing runs when this raises."""
    path = Path(path)
    data = load_file(path, WorkloadError)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return parse(data, str(path), digest)
