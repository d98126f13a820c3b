"""Shared by the persona tests: where the shipped examples are, and how to read load errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from bridge.persona import PersonaError, load_personas
from bridge.realtime.dialect import DialectName

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "personas"


def load_errors(path: Path) -> list[str]:
    """The error lines of loading `path`, which must fail."""
    with pytest.raises(PersonaError) as info:
        load_personas(path)
    return list(info.value.errors)


WriteYaml = Callable[..., Path]


def _local_validate_client_event(event: Mapping[str, Any], dialect: DialectName) -> list[str]:
    """Stand-in for `tests.conformance.validate_client_event` where that module is absent:
    the `openai` package's client-event union, plus a walk of `model_extra` for keys the
    service would reject as `unknown_parameter`."""
    import openai.types.beta.realtime as beta_types
    import openai.types.realtime as ga_types
    from pydantic import BaseModel, TypeAdapter, ValidationError

    union = (ga_types if dialect == "ga" else beta_types).RealtimeClientEvent
    try:
        model = TypeAdapter(union).validate_python(event)
    except ValidationError as exc:
        return [str(exc)]

    def extras(value: object, path: str) -> list[str]:
        found: list[str] = []
        if isinstance(value, BaseModel):
            found += [f"unknown field {path}.{key}" for key in value.model_extra or {}]
            for name in type(value).model_fields:
                found += extras(getattr(value, name), f"{path}.{name}")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                found += extras(item, f"{path}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                found += extras(item, f"{path}.{key}")
        return found

    return extras(model, "event")


try:  # the shared oracle, where a colleague's tests/conformance.py provides it
    from tests.conformance import validate_client_event
except ImportError:  # pragma: no cover - depends on which files are checked out
    validate_client_event = _local_validate_client_event
