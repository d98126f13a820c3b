"""The edge's limits, request by request, over loopback against the app in this process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI

from bridge import edge
from bridge.app import MAX_FORM_BYTES
from bridge.server import uvicorn_config
from bridge.ws import TwilioSocket, _UpgradedProtocol
from tests.conftest import LogCapture, RunningBridge, make_settings, running_bridge, serving

SETTINGS = {"OPENAI_API_KEY": "sk-test-0123456789", "REALTIME_URL": "ws://127.0.0.1:9/v1"}
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
OK = b"\r\n\r\nok"


@asynccontextmanager
async def bridge() -> AsyncIterator[RunningBridge]:
    async with running_bridge(make_settings(**SETTINGS)) as served:
        yield served


def sized(total: int) -> bytes:
    """A /healthz request whose request line and headers are exactly `total` bytes."""
    head = HEALTHZ + b"X-Pad: "
    return head + b"a" * (total - len(head) - 4) + b"\r\n\r\n"


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def until_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        return b""


async def test_every_keepalive_request_gets_the_whole_header_budget(logs: LogCapture) -> None:
    async with bridge() as served:
        reader, writer = await connect(served.port)
        for _ in range(3):
            writer.write(sized(edge.MAX_HEADER_BYTES))
            answer = await asyncio.wait_for(reader.readuntil(OK), 5)
            assert answer.startswith(b"HTTP/1.1 200 ")
        writer.write(sized(edge.MAX_HEADER_BYTES + 1))
        answer = await until_closed(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"connection: close" in answer
    refused = logs.events("http_refused")
    assert [(r["reason"], r["status"], r["count"]) for r in refused] == [
        ("header_too_large", 431, 1)
    ]


async def test_a_hundred_headers_pass_and_one_more_is_refused() -> None:
    async with bridge() as served:
        answers = []
        for count in (edge.MAX_HEADER_COUNT, edge.MAX_HEADER_COUNT + 1):
            reader, writer = await connect(served.port)
            # Host is one of them.
            extra = b"".join(b"X-%d: v\r\n" % k for k in range(count - 1))
            writer.write(HEALTHZ + extra + b"\r\n")
            answers.append(await asyncio.wait_for(reader.read(200), 5))
            writer.close()
    assert answers[0].startswith(b"HTTP/1.1 200 ")
    assert answers[1].startswith(b"HTTP/1.1 431 ")


async def test_headers_trickling_in_byte_by_byte_are_read_across_the_splits() -> None:
    async with bridge() as served:
        reader, writer = await connect(served.port)
        for byte in HEALTHZ + b"X-A: b\r\n\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.001)
        answer = await asyncio.wait_for(reader.readuntil(OK), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_a_request_pipelined_after_a_body_is_counted_from_its_own_first_byte() -> None:
    form = b"CallSid=CA1&StreamSid=MZ1&StreamEvent=stream-started"
    post = (
        b"POST /stream-status HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(form), form)
    )
    async with bridge() as served:
        reader, writer = await connect(served.port)
        # The body, then a GET whose headers are the whole budget: in one write.
        writer.write(post + sized(edge.MAX_HEADER_BYTES))
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        second = await asyncio.wait_for(reader.readuntil(OK), 5)
        writer.close()
    assert first.startswith(b"HTTP/1.1 204 ")
    assert second.startswith(b"HTTP/1.1 200 ")


async def test_headers_not_done_in_time_get_408_and_silence_is_closed(
    monkeypatch: pytest.MonkeyPatch, logs: LogCapture
) -> None:
    monkeypatch.setattr(edge, "HEADER_TIMEOUT_S", 0.3)
    async with bridge() as served:
        partial_reader, partial = await connect(served.port)
        silent_reader, silent = await connect(served.port)
        started = time.monotonic()
        partial.write(b"GET /media-stream HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n")
        answers = await asyncio.gather(until_closed(partial_reader), until_closed(silent_reader))
        took = time.monotonic() - started
        partial.close()
        silent.close()
    assert answers[0].startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answers[1] == b""  # nothing asked, nothing answered
    assert 0.25 <= took < 1.3
    reasons = {r["reason"]: r["status"] for r in logs.events("http_refused")}
    assert reasons == {"header_timeout": 408, "idle_timeout": None}


async def test_a_keepalive_connection_idle_or_slow_on_its_next_request_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(edge, "KEEPALIVE_IDLE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(edge, "HEADER_TIMEOUT_S", 0.6)
    async with bridge() as served:
        idle_reader, idle = await connect(served.port)
        slow_reader, slow = await connect(served.port)
        for writer in (idle, slow):
            writer.write(HEALTHZ + b"\r\n")
        for reader in (idle_reader, slow_reader):
            assert (await asyncio.wait_for(reader.readuntil(OK), 5)).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        slow.write(HEALTHZ)  # the next request starts and never ends
        idle_end = await until_closed(idle_reader)
        idle_after = time.monotonic() - answered
        slow_end = await until_closed(slow_reader)
        slow_after = time.monotonic() - answered
        idle.close()
        slow.close()
    assert idle_end == b"" and 0.25 <= idle_after < 1.3  # closed silently when idle
    # The header timer runs from the next request's first byte, whatever came before.
    assert slow_end.startswith(b"HTTP/1.1 408 ") and 0.55 <= slow_after < 1.6


async def test_past_the_cap_the_oldest_waiting_goes_and_busy_ones_refuse_newcomers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(edge, "MAX_UNAUTHENTICATED_CONNECTIONS", 4)
    monkeypatch.setattr(edge, "BODY_TIMEOUT_S", 1.0)
    async with bridge() as served:
        waiting = [await connect(served.port) for _ in range(4)]
        newest = await connect(served.port)
        # The oldest was closed to admit the fifth; the others are still open.
        assert await until_closed(waiting[0][0], 2) == b""
        for reader, _ in waiting[1:]:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.2)
        for _, writer in [*waiting, newest]:
            writer.close()
        await asyncio.sleep(0.1)
        # Four requests waiting for their bodies cannot be evicted: a fifth gets 503.
        busy = [await connect(served.port) for _ in range(4)]
        for _, writer in busy:
            writer.write(
                b"POST /incoming-call HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nCall"
            )
        await asyncio.sleep(0.2)
        reader, writer = await connect(served.port)
        refused = await until_closed(reader, 2)
        writer.close()
        # Their bodies never come: each is answered 408 at the body timeout.
        late = await asyncio.gather(*(until_closed(r, 3) for r, _ in busy))
        for _, w in busy:
            w.close()
    assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in late), late


async def test_a_form_over_the_cap_is_refused_before_or_as_it_streams(
    logs: LogCapture,
) -> None:
    async with bridge() as served:
        # Declared too long: answered from the headers alone, none of the body sent.
        reader, writer = await connect(served.port)
        writer.write(
            b"POST /incoming-call HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
            % (MAX_FORM_BYTES + 1)
        )
        declared = await until_closed(reader)
        writer.close()
        # Chunked, no length said: refused once the cap is passed, then closed.
        reader, writer = await connect(served.port)
        writer.write(
            b"POST /incoming-call HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n" % 4096 + b"a" * 4096 + b"\r\n"
        sent = 0
        while sent <= MAX_FORM_BYTES:
            writer.write(chunk)
            sent += 4096
        streamed = await until_closed(reader)
        writer.close()
        # Within the cap: the webhook as ever.
        reader, writer = await connect(served.port)
        form = b"CallSid=CA42&From=%2B15550001111&To=%2B15550002222"
        writer.write(
            b"POST /incoming-call HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(form), form)
        )
        accepted = await until_closed(reader)
        writer.close()
    assert declared.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in declared
    assert streamed.startswith(b"HTTP/1.1 413 ")
    assert accepted.startswith(b"HTTP/1.1 200 ") and b"<Stream" in accepted
    assert [r["call_sid"] for r in logs.events("webhook")] == ["CA42"]
    refused = logs.events("http_refused")
    assert [r["reason"] for r in refused] == ["body_too_large"]


async def test_a_form_too_slow_is_answered_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge, "BODY_TIMEOUT_S", 0.3)
    async with bridge() as served:
        reader, writer = await connect(served.port)
        writer.write(b"POST /stream-status HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nCa")
        started = time.monotonic()
        answer = await until_closed(reader)
        took = time.monotonic() - started
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.25 <= took < 1.3


async def test_an_answer_sent_before_the_body_ends_closes_the_connection() -> None:
    async with bridge() as served:
        reader, writer = await connect(served.port)
        writer.write(HEALTHZ + b"Content-Length: 1000000\r\n\r\n" + b"a" * 1000)
        answer = await until_closed(reader)  # EOF: the rest of the body is not read
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nok")


async def test_an_upgraded_media_stream_leaves_the_guard_behind() -> None:
    streams: list[TwilioSocket] = []
    config = uvicorn_config(FastAPI(), "127.0.0.1", 0, on_stream=streams.append)
    async with serving(config) as (server, port):
        reader, writer = await connect(port)
        writer.write(
            b"GET /media-stream HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert answer.startswith(b"HTTP/1.1 101 ")
        assert len(streams) == 1
        raw = streams[0].raw
        assert raw is not None
        # The media stream's bytes go straight to picows: the guard is not in the path, and
        # the connection no longer counts against the unauthenticated cap.
        assert isinstance(raw.get_protocol(), _UpgradedProtocol)
        assert len(server.server_state.connections) == 0
        writer.close()
