"""Logging: JSON lines with call ids, and secrets scrubbed as a last line of defence."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import structlog

from bridge.logs import configure_logging, get_logger
from tests.conftest import LogCapture, _Tee


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    configure_logging("json", "DEBUG", stream=_Tee())


def test_json_lines_carry_ts_level_event_and_the_bound_call_ids() -> None:
    capture = LogCapture()
    configure_logging("json", "INFO", stream=capture)
    structlog.contextvars.bind_contextvars(call_sid="CA1", stream_sid="MZ1")
    try:
        get_logger().info("call_started", persona="default")
    finally:
        structlog.contextvars.unbind_contextvars("call_sid", "stream_sid")
    record = orjson.loads(capture.lines[0])
    assert {"ts", "level", "event", "call_sid", "stream_sid"} <= set(record)
    assert (record["event"], record["call_sid"], record["level"]) == ("call_started", "CA1", "info")


def test_configured_secrets_are_scrubbed_wherever_they_hide() -> None:
    capture = LogCapture()
    secret = "sk-live-ABCDEFGHIJKLMNOP"
    configure_logging("json", "INFO", secrets=[secret], stream=capture)
    get_logger().info("oops", url=f"wss://x/?key={secret}", nested={"h": [f"Bearer {secret}"]})
    line = capture.lines[0]
    assert secret not in line
    assert orjson.loads(line)["nested"]["h"] == ["Bearer [redacted]"]


def test_console_format_is_one_readable_line() -> None:
    capture = LogCapture()
    configure_logging("console", "INFO", stream=capture)
    get_logger().info("barge_in", item_id="item_1", played_ms=420)
    assert len(capture.lines) == 1
    assert "barge_in" in capture.lines[0] and "played_ms=420" in capture.lines[0]
