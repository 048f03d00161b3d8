"""Users' own ops (the contract's "Your own ops"): `package.module:attribute`, or a short name
an installed package registers in the `orch.ops` entry-point group.

The attribute is any object with `params`, `make_inputs` and `run` (optionally `check`, `dtypes`,
`placements`, `flops`, `traffic_bytes`). `UserOp` presents it to the planner as a catalog op:
where it declares no FLOPs, orch counts them with PyTorch's FLOP counter over one `run` on inputs
made on the `meta` device (no memory, no compute), and reads the bytes in and out from those
tensors' shapes; the torch calls `run` makes there that write a tensor are its launches, and
their operands and results its memory traffic. Importing the module
runs its code: a workload that names one is as trusted as that code.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from orchestrator.ops.base import ITEMSIZE, WORKLOAD_DTYPES, Op, Param, Rate, Selection
from orchestrator.ops.tensors import Tensors, require

ENTRY_POINT_GROUP = "orch.ops"
REQUIRED = ("params", "make_inputs", "run")
PLACEMENTS = ("cpu", "gpu")
# torch calls that compare rather than compute: name -> position of their k (None: a full sort)
SORTING = {"topk": 1, "kthvalue": 1, "sort": None, "argsort": None, "msort": None}
SOFTMAX = ("softmax", "log_softmax", "scaled_dot_product_attention")


class UserOpError(KeyError):
    """An op name that cannot become an op; its message is the one line the user sees."""

    def __str__(self) -> str:
        return self.args[0]


def is_user_name(name: str) -> bool:
    return ":" in name


@functools.cache
def installed() -> dict[str, str]:
    """Short name -> "module:attribute" of every op registered in the orch.ops entry points."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


@functools.cache
def resolve(name: str) -> UserOp:
    """The op `name` names: `module:attribute`, or an entry point's short name. UserOpError
    (one line: what is missing and where) when it cannot be imported or is not an op."""
    target = name if is_user_name(name) else installed().get(name)
    if target is None:
        raise UserOpError(f"unknown op '{name}'")
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UserOpError(f"op '{name}': write it as package.module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserOpError(f"op '{name}': cannot import module '{module_name}' ({type(exc).__name__}: {exc}); "
                          "is its package installed where orch runs?") from None
    except Exception as exc:  # noqa: BLE001 - the module's own code failed: still one line
        raise UserOpError(f"op '{name}': importing module '{module_name}' raised {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise UserOpError(f"op '{name}': module '{module_name}' has no attribute '{attribute}'")
        obj = getattr(obj, part)
    missing = [member for member in REQUIRED if not hasattr(obj, member)]
    if missing:
        raise UserOpError(f"op '{name}': {target} has no {' or '.join(missing)} (an op needs params, "
                          "make_inputs and run)")
    return UserOp(name, target, obj)


def _param(name: str, owner: str, default: Any) -> Param:
    if default is None:
        return Param()
    if isinstance(default, bool) or not isinstance(default, (int, list)):
        raise UserOpError(f"op '{owner}': params['{name}'] default must be an int, a list of ints or None "
                          f"(got {default!r})")
    if isinstance(default, list):
        if not default or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in default):
            raise UserOpError(f"op '{owner}': params['{name}'] default must be a list of positive ints")
        return Param(default, kind="size_list")
    if default <= 0:
        raise UserOpError(f"op '{owner}': params['{name}'] default must be positive (got {default})")
    return Param(default)


@dataclass(frozen=True)
class Footprint:
    """One execution as counted on the meta device."""

    flops: float
    input_bytes: float
    output_bytes: float
    input_elements: float
    output_elements: float
    launches: int
    traffic_bytes: float  # every operand read and result written by each call run makes
    selections: tuple[Selection, ...] = ()  # its sort-family calls
    softmax_elements: float = 0.0  # elements its softmax calls (and attention's scores) go over


class UserOp(Op):
    """A user's object as a catalog op: its own figures where it declares them, counted ones
    otherwise; its own `make_inputs`, `run` and, where it has one, `check`, called the way the
    harness calls the catalog's kernels. Runs on one device (no split), on `placements`, in
    `dtypes`."""

    rate = Rate.GEMM  # declared or counted FLOPs run at the GEMM rate; none: memory-bound
    eager_torch = True  # each launch pays torch's per-op dispatch (the profile's torch_op_overhead_s)

    def __init__(self, name: str, target: str, obj: Any) -> None:
        self.name, self.target, self.obj = name, target, obj  # type: ignore[misc]
        raw = obj.params
        if not isinstance(raw, dict):
            raise UserOpError(f"op '{name}': params must be a dict of name -> default (got {type(raw).__name__})")
        self.params = {str(key): _param(str(key), name, value) for key, value in raw.items()}  # type: ignore[misc]
        dtypes = tuple(getattr(obj, "dtypes", ("float32",)))
        unknown = [d for d in dtypes if d not in WORKLOAD_DTYPES]
        if unknown or not dtypes:
            raise UserOpError(f"op '{name}': dtypes must be among {', '.join(WORKLOAD_DTYPES)} (got {dtypes})")
        self.dtypes = dtypes  # type: ignore[misc]
        placements = tuple(getattr(obj, "placements", PLACEMENTS))
        if not placements or any(p not in PLACEMENTS for p in placements):
            raise UserOpError(f"op '{name}': placements must be among cpu, gpu (got {placements})")
        self.placements = placements
        self.summary = (getattr(obj, "__doc__", None) or f"{target} (user op)").strip().splitlines()[0]  # type: ignore[misc]
        why = f"{name} is a user op that runs on one device"
        self.not_supported = {"multi_gpu": why, "multi_node": why}  # type: ignore[misc]
        if "gpu" not in placements:
            self.not_supported["gpu"] = f"{name} says it runs on: {', '.join(placements)}"
        if "cpu" not in placements:
            self.not_supported["cpu"] = f"{name} says it runs on: {', '.join(placements)}"

    def scaled_like(self, compute_s: float, memory_s: float) -> str:
        """A user op has no op benchmarks of its own: where its FLOPs bind, it runs at the
        efficiency the profile measured for batched_matmul at the same modelled work (the
        catalog's GEMMs in batches, as attention and most tensor kernels are); where memory
        binds, at the modelled bandwidth."""
        return "batched_matmul" if compute_s >= memory_s else self.name

    @property
    def declares_flops(self) -> bool:
        return callable(getattr(self.obj, "flops", None))

    def footprint(self, p: dict[str, Any], itemsize: int = 4) -> Footprint:
        return _footprint(self, _frozen(p), itemsize)

    def flops(self, p: dict[str, Any]) -> float:
        if self.declares_flops:
            return float(self.obj.flops(dict(p)))
        return self.footprint(p).flops

    def input_elements(self, p: dict[str, Any]) -> float:
        return self.footprint(p).input_elements

    def output_elements(self, p: dict[str, Any]) -> float:
        return self.footprint(p).output_elements

    def input_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        return self.footprint(p, itemsize).input_bytes

    def output_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        return self.footprint(p, itemsize).output_bytes

    def traffic_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        if callable(getattr(self.obj, "traffic_bytes", None)):
            return float(self.obj.traffic_bytes(dict(p)))
        return self.footprint(p, itemsize).traffic_bytes

    def working_set_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        found = self.footprint(p, itemsize)
        return found.input_bytes + found.output_bytes

    def launches(self, p: dict[str, Any]) -> int:
        return self.footprint(p).launches

    def selections(self, p: dict[str, Any]) -> tuple[Selection, ...]:
        return self.footprint(p).selections

    def softmax_elements(self, p: dict[str, Any]) -> float:
        return self.footprint(p).softmax_elements

    def make_inputs(self, p: dict[str, Any], dtype: Any, gen: Any, device: Any) -> Tensors:
        made = self.obj.make_inputs(dict(p), dtype, device, gen)
        # a list travels as a tuple (what the harness moves between devices) and is handed back as a list
        return {"inputs": tuple(made) if isinstance(made, list) else made, "as_list": isinstance(made, list)}

    @staticmethod
    def _inputs(x: Tensors) -> Any:
        return list(x["inputs"]) if x["as_list"] else x["inputs"]

    def run(self, x: Tensors, p: dict[str, Any]) -> Any:
        return self.obj.run(self._inputs(x), dict(p))

    def check(self, x: Tensors, result: Any, p: dict[str, Any], dtype: str) -> float | None:
        """The op's own relative error, held to the dtype's tolerance; None where it has no check."""
        if not callable(getattr(self.obj, "check", None)):
            return None
        return require(float(self.obj.check(self._inputs(x), result, dict(p), dtype)), dtype, self.name)


def _frozen(p: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in p.items()))


def _tensors(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []  # scalars, dtypes, devices among an aten call's arguments


@functools.lru_cache(maxsize=4096)
def _footprint(op: UserOp, frozen: tuple[tuple[str, Any], ...], itemsize: int) -> Footprint:
    """Make the inputs on the meta device and run once under PyTorch's FLOP counter."""
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils.flop_counter import FlopCounterMode

    class Calls(TorchFunctionMode):
        """The torch calls `run` makes, as it makes them (a fused library call is one call, an
        eager chain is each of its steps): each call that writes a new tensor is a launch and
        reads every operand and writes every result; views cost nothing."""

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0
            self.moved = 0.0
            self.selections: list[Selection] = []
            self.softmax = 0.0

        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            out = func(*args, **(kwargs or {}))
            written = [t for t in _tensors(out) if t._base is None]
            name = getattr(func, "__name__", "")
            if name in SORTING and written:
                self.selections.append(_selection(name, args, kwargs or {}))
            if name in SOFTMAX and written:
                self.softmax += _softmax_elements(name, args, kwargs or {})
            if written:
                self.calls += 1
                self.moved += sum(t.numel() * t.element_size() for t in [*_tensors([args, kwargs or {}]), *written])
            return out

    dtype = {2: torch.float16, 4: torch.float32, 8: torch.float64}.get(itemsize, torch.float32)
    p = {k: list(v) if isinstance(v, tuple) else v for k, v in frozen}
    try:
        inputs = op.obj.make_inputs(dict(p), dtype, torch.device("meta"), torch.Generator().manual_seed(0))
        counter = Calls()
        with FlopCounterMode(display=False) as flops, counter:
            result = op.obj.run(inputs, dict(p))
    except Exception as exc:  # noqa: BLE001 - the op's code, on meta tensors
        from orchestrator.errors import InputError

        raise InputError(f"op '{op.name}': cannot measure it on the meta device ({type(exc).__name__}: "
                         f"{str(exc)[:200]})", fix="declare flops(params) and traffic_bytes(params), or make "
                         "make_inputs and run work on torch.device('meta')") from None
    ins, outs = _tensors(inputs), _tensors(result)
    return Footprint(
        flops=float(flops.get_total_flops()),
        input_bytes=float(sum(t.numel() * t.element_size() for t in ins)),
        output_bytes=float(sum(t.numel() * t.element_size() for t in outs)),
        input_elements=float(sum(t.numel() for t in ins)),
        output_elements=float(sum(t.numel() for t in outs)),
        launches=max(counter.calls, 1),
        traffic_bytes=max(counter.moved, 1.0),
        selections=tuple(counter.selections),
        softmax_elements=counter.softmax)


def _softmax_elements(name: str, args: tuple, kwargs: dict) -> float:
    """Elements a softmax-family call goes over: its input's; attention's, its scores (every
    query against every key: query.numel() / head_dim x keys)."""
    tensors = _tensors([args, kwargs])
    if name != "scaled_dot_product_attention":
        return float(tensors[0].numel()) if tensors else 0.0
    if len(tensors) < 2 or tensors[0].dim() < 2 or tensors[1].dim() < 2:
        return 0.0
    query, key = tensors[0], tensors[1]
    return float(query.numel() / query.shape[-1] * key.shape[-2])


def _selection(name: str, args: tuple, kwargs: dict) -> Selection:
    """A sort-family call's work: the elements of the tensor it sorts, and its k."""
    first = _tensors(args[:1])
    elements = float(first[0].numel()) if first else 0.0
    at = SORTING[name]
    k = kwargs.get("k", args[at] if at is not None and len(args) > at else None)
    return Selection(elements, int(k) if isinstance(k, int) and k > 0 else None)


def describe(op: Op) -> dict[str, Any]:
    """What `orch ops NAME` prints: parameters, dtypes, placements, where it comes from."""
    params = {name: (spec.default if spec.default is not None else "required") for name, spec in op.params.items()}
    kinds = ("cpu", "gpu", "multi_gpu", "multi_node")
    return {"name": op.name, "source": getattr(op, "target", "catalog"), "summary": op.summary, "params": params,
            "dtypes": list(op.dtypes), "placements": [kind for kind in kinds if op.where_not(kind) is None],
            "flops": ("declared" if getattr(op, "declares_flops", False) else "counted on meta")
            if isinstance(op, UserOp) else "formula"}


__all__ = ["ENTRY_POINT_GROUP", "ITEMSIZE", "UserOp", "UserOpError", "describe", "installed", "is_user_name", "resolve"]
