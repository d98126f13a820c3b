"""`describe`: the one way a caught exception becomes text in logs and tool results."""

from __future__ import annotations

from bridge.errors import describe


class _Quiet(Exception):
    def __str__(self) -> str:
        return ""


def test_type_then_message() -> None:
    assert describe(ConnectionRefusedError(111, "Connection refused")) == (
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert describe(ValueError("bad digit")) == "ValueError: bad digit"


def test_an_empty_message_leaves_the_type_alone() -> None:
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(_Quiet("hidden")) == "_Quiet"


def test_no_exception_is_no_text() -> None:
    assert describe(None) == ""
