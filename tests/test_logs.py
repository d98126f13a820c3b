"""Logging: JSON lines with call ids, and secrets scrubbed as a last line of defence."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
import structlog

from bridge import logs as logs_module
from bridge.logs import configure_logging, flush_logs, get_logger
from bridge.sim.audio import speech_like
from tests.conftest import LogCapture, _Tee, bridged_call, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say


class BlockedStream(io.TextIOBase):
    """stdout whose reader has stopped: `write` waits until released (at most `limit` s)."""

    def __init__(self, limit: float = 10.0) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.limit = limit
        self.writers: set[int] = set()
        self.text: list[str] = []

    def write(self, text: str) -> int:
        self.writers.add(threading.get_ident())
        self.entered.set()
        self.released.wait(self.limit)
        self.text.append(text)
        return len(text)

    def records(self) -> list[dict[str, object]]:
        return [orjson.loads(line) for line in "".join(self.text).splitlines()]


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


def test_a_blocked_stream_never_blocks_the_thread_that_logs() -> None:
    stream = BlockedStream(limit=3.0)
    configure_logging("json", "INFO", stream=stream)
    log = get_logger()
    for i in range(3):
        log.info("tick", i=i)
    assert stream.entered.wait(3.0)  # the writer thread is inside write(), stuck
    assert threading.get_ident() not in stream.writers
    assert stream.text == []
    stream.released.set()
    assert flush_logs()
    assert [r["i"] for r in stream.records()] == [0, 1, 2]


def test_lines_past_the_queue_are_dropped_counted_and_reported_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = BlockedStream(limit=3.0)
    configure_logging("json", "INFO", stream=stream)
    assert logs_module._writer is not None
    monkeypatch.setattr(logs_module._writer, "capacity", 4)
    log = get_logger()
    log.info("line", i=0)
    assert stream.entered.wait(3.0)  # line 0 is being written; the next ones wait
    for i in range(1, 11):
        log.info("line", i=i)
    stream.released.set()
    deadline = time.monotonic() + 3.0
    while not any(r["event"] == "log_lines_dropped" for r in stream.records()):
        assert time.monotonic() < deadline, "no log_lines_dropped line"
        flush_logs()
        time.sleep(0.01)
    records = stream.records()
    assert [r["i"] for r in records[:-1]] == [0, 1, 2, 3, 4]
    assert (records[-1]["event"], records[-1]["level"], records[-1]["count"]) == (
        "log_lines_dropped",
        "error",
        6,
    )


async def test_a_call_plays_its_audio_while_stdout_is_blocked_and_no_line_is_lost() -> None:
    """Over real sockets: nothing of the call's logging may wait for the log's reader."""
    greeting_ms, reply_ms = 600, 400
    stream = BlockedStream(limit=20.0)
    configure_logging("json", "INFO", stream=stream)
    script = [[Say("Hello there.", greeting_ms)], [Say("Sure.", reply_ms)]]
    try:
        async with FakeRealtimeServer("ga", script, ["Can you help?"], speed=1.0) as fake:
            async with bridged_call(fake) as (_, caller, session):
                await wait_until(lambda: caller.played_ms_total >= greeting_ms, 5, "greeting")
                await caller.wait_playback_idle()
                caller.say(speech_like(600))
                await session.wait_for_event("response.done", 5, nth=2)
                total = greeting_ms + reply_ms
                await wait_until(lambda: caller.played_ms_total >= total, 5, "the reply")
                await caller.wait_playback_idle()
                assert stream.entered.is_set() and stream.text == []  # stuck all along
            await session.wait_closed(2)
    finally:
        stream.released.set()
    assert caller.played_ms_total >= greeting_ms + reply_ms
    assert await asyncio.to_thread(flush_logs)
    await wait_until(
        lambda: any(r["event"] == "call_ended" for r in stream.records()), 5, "call_ended"
    )
    records = stream.records()
    transcript = [(r["role"], r["text"]) for r in records if r["event"] == "transcript"]
    assert transcript == [
        ("agent", "Hello there."),
        ("caller", "Can you help?"),
        ("agent", "Sure."),
    ]
    assert [r["event"] for r in records].count("call_started") == 1
    assert not [r for r in records if r["event"] == "log_lines_dropped"]
