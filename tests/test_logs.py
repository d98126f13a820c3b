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


def test_static_fields_name_a_worker_on_every_line_and_only_when_asked() -> None:
    capture = LogCapture()
    configure_logging("json", "INFO", stream=capture, static={"worker": 3})
    get_logger().info("call_started", persona="default")
    get_logger().info("other", worker=7)  # a line's own value wins
    configure_logging("json", "INFO", stream=capture)
    get_logger().info("plain")
    flush_logs()
    records = [orjson.loads(line) for line in capture.lines]
    assert [r.get("worker") for r in records] == [3, 7, None]
    assert "worker" not in records[2]


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


# Bounds in bytes ---------------------------------------------------------------------------


def test_a_long_field_is_cut_to_its_cap_with_a_marker_saying_how_much() -> None:
    capture = LogCapture()
    configure_logging("json", "INFO", stream=capture)
    get_logger().info("webhook", call_sid="C" * 65536, persona="default", count=3)
    record = orjson.loads(capture.lines[0])
    cap = logs_module.FIELD_MAX_BYTES
    assert record["call_sid"] == "C" * cap + f"...[cut {65536 - cap} bytes]"
    assert (record["persona"], record["count"]) == ("default", 3)
    assert len(capture.lines[0].encode()) < cap + 200


def test_a_cut_never_splits_a_character_and_nested_values_are_cut_too() -> None:
    capture = LogCapture()
    configure_logging("json", "INFO", stream=capture)
    nested = {"a": ["z" * 5000, *range(99)]}
    get_logger().info("x", text_like="a" + "é" * 3000, nested=nested)
    record = orjson.loads(capture.lines[0])  # valid UTF-8 and JSON
    # 2,048 bytes end inside an é: it goes whole, and the marker counts it
    assert record["text_like"] == "a" + "é" * 1023 + "...[cut 3954 bytes]"
    items = record["nested"]["a"]
    assert len(items) == logs_module.LIST_MAX_ITEMS + 1 and items[-1] == "...[cut 36 items]"
    assert items[0] == "z" * 2048 + "...[cut 2952 bytes]" and items[1:3] == [0, 1]


def test_a_secret_astride_the_cut_is_redacted_whole_before_the_cut() -> None:
    capture = LogCapture()
    secret = "sk-live-ABCDEFGHIJKLMNOP"
    configure_logging("json", "INFO", secrets=[secret], stream=capture)
    cap = logs_module.FIELD_MAX_BYTES
    get_logger().info("oops", detail="a" * (cap - 8) + secret + "b" * 100)
    line = capture.lines[0]
    assert secret[:6] not in line  # not even its first half
    assert orjson.loads(line)["detail"].startswith("a" * (cap - 8) + "[redacte...[cut ")


def test_a_line_past_its_cap_keeps_its_event_and_ids_and_names_its_fields() -> None:
    capture = LogCapture()
    configure_logging("json", "INFO", stream=capture)
    fields = {f"f{i}": "v" * 4000 for i in range(20)}  # 20 fields of 2 KiB after the cut
    structlog.contextvars.bind_contextvars(call_sid="CA1")
    try:
        get_logger().warning("big", **fields)
    finally:
        structlog.contextvars.unbind_contextvars("call_sid")
    (line,) = capture.lines
    record = orjson.loads(line)
    assert len(line.encode()) <= logs_module.LINE_MAX_BYTES
    assert (record["event"], record["level"], record["call_sid"]) == ("big", "warning", "CA1")
    assert record["line_cut_bytes"] > logs_module.LINE_MAX_BYTES
    assert record["fields"] == list(fields)


def test_the_waiting_lines_are_bounded_in_bytes_while_the_stream_is_blocked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attack measured at 866 MiB: long lines logged while stdout does not move."""
    stream = BlockedStream(limit=20.0)
    configure_logging("json", "INFO", stream=stream)
    writer = logs_module._writer
    assert writer is not None
    log = get_logger()
    log.info("first")
    assert stream.entered.wait(3.0)  # the writer is stuck in write(); the rest wait
    peak = 0
    total = 3000
    for i in range(total):  # 3,000 lines of about 16 KiB: 48 MiB asked for
        log.info("webhook", i=i, **{f"f{k}": "x" * 5000 for k in range(8)})
        peak = max(peak, writer.pending_bytes)
    assert peak <= logs_module.LOG_QUEUE_BYTES
    assert peak > logs_module.LOG_QUEUE_BYTES - 32 * 1024  # full to within one line
    stream.released.set()
    deadline = time.monotonic() + 10.0
    while not any(r["event"] == "log_lines_dropped" for r in stream.records()):
        assert time.monotonic() < deadline, "no log_lines_dropped line"
        flush_logs()
        time.sleep(0.01)
    records = stream.records()
    kept = [r for r in records if r["event"] == "webhook"]
    (dropped,) = [r["count"] for r in records if r["event"] == "log_lines_dropped"]
    assert len(kept) + dropped == total
    assert [r["i"] for r in kept] == list(range(len(kept)))  # the oldest are kept, in order
    assert 1800 < len(kept) < 2200  # 32 MiB of 16 KiB lines


def test_expiring_secrets_are_scrubbed_by_shape_lapse_and_stay_bounded() -> None:
    now = [1000.0]
    store = logs_module.ExpiringSecrets(capacity=3, clock=lambda: now[0])
    tokens = [f"{'Q0E' * 10}{i:04d}.{'m' * 43}" for i in range(5)]
    store.add(tokens[:2], expires_at=1060.0)
    assert store.scrub(f"token={tokens[0]}&x={tokens[1]} {tokens[2]}") == (
        f"token=[redacted]&x=[redacted] {tokens[2]}"
    )
    store.add(tokens[2:], expires_at=1060.0)
    assert len(store) == 3  # the oldest went first
    assert store.scrub(tokens[0]) == tokens[0] and store.scrub(tokens[4]) == "[redacted]"
    now[0] = 1061.0
    store.add([], expires_at=0.0)
    assert len(store) == 0
