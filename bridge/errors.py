"""How a failure is described in a log line or a tool's error output: one way everywhere."""

from __future__ import annotations


def describe(exc: BaseException | None) -> str:
    """`Type: message`, or the type alone when the exception says nothing."""
    if exc is None:
        return ""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
