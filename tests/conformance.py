"""Conformance oracle: is this event what the Realtime service documents?

The ``openai`` package's type models are the closest thing to a published schema. Its event
unions are only tagged for the SDK's own loose parser, so here they are rebuilt once as
pydantic discriminated unions on ``type``. The models allow extra fields (the SDK must not
break when the service adds some); a client sending an unknown key is still wrong (the
service answers ``unknown_parameter``), so every validated model is walked and each extra
key reported.

``validate_client_event`` / ``validate_server_event`` return human-readable problems, empty
when the event is valid. ``check_client_event`` / ``check_server_event`` return the same as
:class:`Problem` records with the service's error codes, for fakes that answer like it.
"""

from __future__ import annotations

import typing
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union

import openai.types.beta.realtime as beta_types
import openai.types.realtime as ga_types
import pydantic
from pydantic import BaseModel, Field, TypeAdapter

DialectName = Literal["ga", "beta"]
Direction = Literal["client", "server"]

_UNIONS: Mapping[tuple[DialectName, Direction], Any] = {
    ("ga", "client"): ga_types.RealtimeClientEvent,
    ("ga", "server"): ga_types.RealtimeServerEvent,
    ("beta", "client"): beta_types.RealtimeClientEvent,
    ("beta", "server"): beta_types.RealtimeServerEvent,
}


@dataclass(frozen=True)
class Problem:
    """One way an event departs from the schema.

    ``code`` is the service's error code for the same mistake: ``unknown_parameter``,
    ``missing_required_parameter``, ``invalid_value`` or ``invalid_type``.
    """

    event_type: str
    code: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.event_type}: {self.message}"


def validate_client_event(event: Mapping[str, Any], dialect: DialectName) -> list[str]:
    """Problems of a client → server event in ``dialect``; empty when it conforms."""
    return [str(p) for p in check_client_event(event, dialect)]


def validate_server_event(event: Mapping[str, Any], dialect: DialectName) -> list[str]:
    """Problems of a server → client event in ``dialect``; empty when it conforms."""
    return [str(p) for p in check_server_event(event, dialect)]


def check_client_event(event: Mapping[str, Any], dialect: DialectName) -> list[Problem]:
    return _check(event, dialect, "client")


def check_server_event(event: Mapping[str, Any], dialect: DialectName) -> list[Problem]:
    return _check(event, dialect, "server")


@cache
def _adapter(dialect: DialectName, direction: Direction) -> TypeAdapter[Any]:
    """The event union as a pydantic discriminated union, built on first use and kept."""
    union, *_ = typing.get_args(_UNIONS[dialect, direction])
    members = typing.get_args(union)
    return TypeAdapter(Annotated[Union[members], Field(discriminator="type")])  # noqa: UP007


def _check(event: Mapping[str, Any], dialect: DialectName, direction: Direction) -> list[Problem]:
    if dialect not in ("ga", "beta"):
        raise ValueError(f"unknown dialect {dialect!r}")
    kind = event.get("type") if isinstance(event, Mapping) else None
    label = kind if isinstance(kind, str) else "<no type>"
    try:
        model = _adapter(dialect, direction).validate_python(event)
    except pydantic.ValidationError as exc:
        return _from_validation_error(exc, label)
    return [
        Problem(label, "unknown_parameter", path, f"unknown field {path}")
        for path in _extra_paths(model, "")
    ]


def _extra_paths(value: Any, path: str) -> list[str]:
    """Every key that no model declared, as a dotted path, depth first."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            found.append(_join(path, key))
        for name, field in type(value).model_fields.items():
            found += _extra_paths(getattr(value, name), _join(path, field.alias or name))
    elif isinstance(value, list | tuple):
        for i, element in enumerate(value):
            found += _extra_paths(element, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, element in value.items():
            found += _extra_paths(element, _join(path, str(key)))
    return found


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- turning pydantic's errors into readable problems ----------------------------------------

_TAG_SCORE = {"type": 2, "role": 1}
_SCALAR_LABELS = frozenset({"str", "int", "float", "bool", "none", "list", "dict", "nullable"})


def _is_union_label(part: object) -> bool:
    """Whether a ``loc`` part names a union member (``ServerVad``, ``literal['x']``…), not a key."""
    return isinstance(part, str) and (part[:1].isupper() or "[" in part or part in _SCALAR_LABELS)


def _prune_wrong_variants(errors: list[Any]) -> list[Any]:
    """At each smart union, keep only the members whose tag fields matched best.

    pydantic reports every member's failures. A member whose ``type`` literal fails is the
    wrong variant, and so (less surely) is one whose ``role`` fails; their complaints would
    drown the real problem. Union points are pruned outermost first.
    """
    alive = list(errors)
    points = sorted(
        {
            tuple(e["loc"][:i])
            for e in errors
            for i, part in enumerate(e["loc"])
            if i > 0 and _is_union_label(part)
        },
        key=len,
    )
    for prefix in points:
        n = len(prefix)
        members: dict[str, list[Any]] = defaultdict(list)
        for e in alive:
            loc = e["loc"]
            if len(loc) > n and tuple(loc[:n]) == prefix and _is_union_label(loc[n]):
                members[loc[n]].append(e)
        if len(members) < 2:
            continue
        score = {
            member: max(
                (
                    _TAG_SCORE.get(e["loc"][-1], 0)
                    for e in errs
                    if e["type"] == "literal_error" and len(e["loc"]) == n + 2
                ),
                default=0,
            )
            for member, errs in members.items()
        }
        best = min(score.values())
        dropped = {id(e) for m, errs in members.items() if score[m] > best for e in errs}
        alive = [e for e in alive if id(e) not in dropped]
    return alive


def _from_validation_error(exc: pydantic.ValidationError, label: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    errors = _prune_wrong_variants(exc.errors())
    expected: dict[str, list[str]] = defaultdict(list)
    for error in errors:
        if error["type"] == "literal_error":
            expected[_path(error["loc"][1:])].append(error.get("ctx", {}).get("expected", "?"))
    for error in errors:
        kind = error["type"]
        if kind == "union_tag_invalid":
            problem = Problem(label, "invalid_value", "type", f"unknown event type {label!r}")
        elif kind == "union_tag_not_found":
            problem = Problem(label, "missing_required_parameter", "type", "event has no 'type'")
        elif kind == "model_attributes_type" and not error["loc"]:
            problem = Problem(label, "invalid_type", "", "event is not a JSON object")
        else:
            path = _path(error["loc"][1:])
            if kind == "missing":
                problem = Problem(
                    label, "missing_required_parameter", path, f"missing required field {path}"
                )
            elif kind == "literal_error":
                choices = " or ".join(expected[path])
                problem = Problem(
                    label,
                    "invalid_value",
                    path,
                    f"invalid value {error['input']!r} at {path}: expected {choices}",
                )
            else:
                problem = Problem(label, "invalid_type", path, f"{path}: {error['msg']}")
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            problems.append(problem)
    return problems


def _path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _is_union_label(part):
            path = _join(path, str(part))
    return path
