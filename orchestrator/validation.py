"""Turn a pydantic ValidationError into the contract's one-line `FILE: path: what` message."""

from __future__ import annotations

from collections.abc import Iterable
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.errors import did_you_mean


def field_path(loc: Iterable[Any]) -> str:
    """('jobs', 2, 'm') → 'jobs[2].m'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """The keys a model accepts at the container `loc` names (for 'did you mean')."""
    annotation: Any = model
    for part in loc:
        current = _model_in(annotation)
        if isinstance(part, str) and current is not None and part in current.model_fields:
            annotation = current.model_fields[part].annotation
            continue
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (list, tuple) or (origin is dict and isinstance(part, str)):
            annotation = args[-1] if args else Any
        elif origin in (typing.Union, types.UnionType) and args:
            annotation = args[0]
        else:
            return []
    current = _model_in(annotation)
    return list(current.model_fields) if current is not None else []


def _field_loc(loc: Iterable[Any]) -> list[Any]:
    """The location without pydantic's validator and union-member tags (`function-after`,
    `constrained-int`, `literal['auto']`)."""
    return [p for p in loc if not (isinstance(p, str) and (p.startswith(("function-", "literal[")) or
                                                           p in ("constrained-int", "int", "str", "float")))]


def first_problem(exc: ValidationError, model: type[BaseModel] | None = None) -> tuple[list[Any], str]:
    """(field location, message) of the most useful error; unknown keys get a 'did you mean'.

    A model validator that raises "field: message" is reported at that field.
    """
    errors = exc.errors()
    # A misspelt key also shows up as a missing one; the unknown key is the useful message.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = _field_loc(err["loc"])
    if err["type"] == "extra_forbidden":
        valid = fields_at(model, loc[:-1]) if model is not None else []
        hint = f"; {did_you_mean(str(loc[-1]), valid)}" if valid else ""
        return loc, f"unknown key{hint}"
    if err["type"] == "missing":
        return loc, "required field is missing"
    message = err["msg"].replace("Value error, ", "")
    if not loc and ": " in message:
        field_name, _, message = message.partition(": ")
        loc = [field_name]
        return loc, message
    alternatives = [e for e in errors if e is not err and _field_loc(e["loc"]) == loc and e["type"] == "literal_error"]
    if alternatives:  # a union such as `repeats: 3 | auto`: say both
        message += ", or " + str(alternatives[0].get("ctx", {}).get("expected", ""))
    given = err.get("input")
    shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {_clip(repr(given))})"
    if err["type"] == "literal_error" and isinstance(given, str):
        choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        return loc, f"unknown value {given!r}; {did_you_mean(given, choices)}"
    return loc, f"{message}{shown}"


def describe(exc: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    """The contract's one-line error: `SOURCE: field.path: what is wrong`."""
    loc, message = first_problem(exc, model)
    return f"{source}: {field_path(loc)}: {message}"


def _clip(text: str, limit: int = 60) -> str:
    """A value as the message shows it: long ones cut in the middle (a size of 5,000 digits)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...{text[-limit // 4:]} ({len(text)} characters)"
