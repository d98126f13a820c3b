"""Checks on the JSON fields of client events, failing with the service's error codes."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from bridge.engine.errors import ProtocolError

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    dict: "an object",
    list: "an array",
}


def unknown_keys(obj: Mapping[str, Any], allowed: Collection[str], path: str) -> None:
    """Reject a key the service does not know, as it does ("Unknown parameter")."""
    for key in obj:
        if key not in allowed:
            param = f"{path}.{key}" if path else key
            raise ProtocolError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def require(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        param = f"{path}.{key}" if path else key
        raise ProtocolError(
            "missing_required_parameter", f"Missing required parameter: '{param}'.", param
        )
    return obj[key]


def typed(
    value: Any, expected: type | tuple[type, ...], param: str, *, nullable: bool = False
) -> Any:
    """``value`` if it has the expected JSON type; bool is never accepted as a number."""
    if value is None and nullable:
        return None
    kinds = expected if isinstance(expected, tuple) else (expected,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise ProtocolError(
            "invalid_type",
            f"Invalid type for '{param}': expected {names}, but got {_json_type(value)} instead.",
            param,
        )
    return value


def one_of(value: Any, allowed: Collection[Any], param: str) -> Any:
    if value not in allowed:
        supported = ", ".join(f"'{a}'" for a in allowed)
        raise ProtocolError(
            "invalid_value",
            f"Invalid value: '{value}'. Supported values are: {supported}.",
            param,
        )
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return next(
        (name for kind, name in _TYPE_NAMES.items() if isinstance(value, kind)),
        type(value).__name__,
    )
