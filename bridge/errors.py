"""How an exception is named in a log line or a tool result: its type, then its message.

One spelling for every module that reports a failure it caught: the type says what kind of
failure it was (`ConnectionRefusedError`, `TimeoutError`), the message which one; many
exceptions (a bare `TimeoutError`) have no message, and then the type alone is the text.
"""

from __future__ import annotations

__all__ = ["describe"]


def describe(exc: BaseException | None) -> str:
    """`"Type: message"`, or `"Type"` when the message is empty; `""` for no exception
    (what `Task.exception()` returns for a task that finished normally)."""
    if exc is None:
        return ""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
