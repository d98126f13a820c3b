"""The media stream's WebSocket layer (`bridge/ws.py`) at the frame level, over a real socket:
fragmented messages, invalid UTF-8, pings, the size cap across fragments, routing, and the
writes made at the end of the loop's pass."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import os
import struct
import termios
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from bridge.server import uvicorn_config
from bridge.ws import LoopWrites, TwilioSocket, proxy_for
from tests.conftest import LogCapture, serving, wait_until
from tests.test_bad_input import CALL, appends, bridge_and_fake, media_message, start_message

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


class RawClient:
    """A WebSocket client that writes frames by hand (masked, as a client must)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str = "/media-stream") -> tuple[RawClient, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return cls(reader, writer), head

    def frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        mask = os.urandom(4)
        size = len(payload)
        first = (0x80 if fin else 0) | opcode
        if size < 126:
            header = struct.pack("!BB", first, 0x80 | size)
        elif size < 65536:
            header = struct.pack("!BBH", first, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    def text(self, message: str) -> None:
        self.frame(TEXT, message.encode())

    def fragments(self, message: str, parts: int) -> None:
        data = message.encode()
        step = -(-len(data) // parts)
        chunks = [data[i : i + step] for i in range(0, len(data), step)]
        for index, chunk in enumerate(chunks):
            opcode = TEXT if index == 0 else CONTINUATION
            self.frame(opcode, chunk, fin=index == len(chunks) - 1)

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(size)

    async def wait_for(self, opcode: int, timeout: float = 5.0) -> bytes:
        async def scan() -> bytes:
            while True:
                kind, payload = await self.read_frame()
                if kind == opcode:
                    return payload

        return await asyncio.wait_for(scan(), timeout)

    def close(self) -> None:
        self.writer.close()


async def test_fragmented_messages_are_reassembled_and_bad_frames_cost_one_message(
    logs: LogCapture,
) -> None:
    async with bridge_and_fake() as (bridge, fake):
        client, head = await RawClient.connect(bridge.port)
        assert head.startswith(b"HTTP/1.1 101")
        client.fragments(start_message(), 3)
        session = await fake.wait_for_session()
        client.fragments(media_message(), 4)  # one message in four frames: one append
        await wait_until(lambda: appends(session) == 1, 5, "the reassembled media")
        client.frame(TEXT, b'{"event": "media", "x": "\xff\xfe"}')  # not UTF-8
        client.frame(BINARY, b"\x00\x01")
        client.frame(CONTINUATION, b"stray")  # continues nothing
        client.frame(PING, b"are you there")
        assert await client.wait_for(PONG) == b"are you there"
        client.text(media_message())
        await wait_until(lambda: appends(session) == 2, 5, "the media after the bad frames")
        client.frame(CLOSE, struct.pack("!H", 1000))
        await client.wait_for(CLOSE)
        client.close()
        await wait_until(lambda: bridge.calls.active_calls == 0, 5, "the call to end")
    rejected = logs.events("twilio_message_rejected")
    assert [line["error"] for line in rejected] == [
        "text frame is not valid UTF-8",
        "binary frame (Media Streams is text only)",
        "continuation frame without a message to continue",
    ]
    assert {line["call_sid"] for line in rejected} == {CALL}
    assert logs.events("call_ended")[0]["reason"] == "caller_hangup"


async def test_fragments_past_the_size_cap_close_1009() -> None:
    async with bridge_and_fake() as (bridge, fake):
        client, _ = await RawClient.connect(bridge.port)
        client.text(start_message())
        await fake.wait_for_session()
        client.frame(TEXT, b"x" * 40_000, fin=False)  # each frame is under the 64 KiB cap…
        client.frame(CONTINUATION, b"x" * 40_000, fin=True)  # …the message is not
        payload = await client.wait_for(CLOSE)
        assert struct.unpack("!H", payload[:2])[0] == 1009
        client.close()
        await wait_until(lambda: bridge.calls.active_calls == 0, 5, "the call to end")


@pytest.mark.parametrize("path", ["/elsewhere", "/media-stream-x"])
async def test_websocket_upgrades_elsewhere_are_refused_and_http_routes_still_work(
    path: str,
) -> None:
    async with bridge_and_fake() as (bridge, _):
        client, head = await RawClient.connect(bridge.port, path)
        assert head.startswith(b"HTTP/1.1 404")
        client.close()
        async with httpx.AsyncClient() as http:
            assert (await http.get(bridge.base_url + "/healthz")).status_code == 200
        assert bridge.calls.active_calls == 0


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, "wss://api.openai.com/v1/realtime", None),
        (
            {"HTTPS_PROXY": "http://proxy:3128"},
            "wss://api.openai.com/v1/realtime",
            "http://proxy:3128",
        ),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "ws://127.0.0.1:9/v1/realtime", None),
        ({"ALL_PROXY": "socks5://p:1"}, "ws://127.0.0.1:9/v1/realtime", None),
        ({"ALL_PROXY": "socks5://p:1"}, "wss://example.openai.azure.com/x", "socks5://p:1"),
        ({"HTTP_PROXY": "http://p:1"}, "ws://model.internal/v1/realtime", "http://p:1"),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "openai.com"},
            "wss://api.openai.com/v1/realtime",
            None,
        ),
    ],
)
def test_the_upstream_uses_the_environments_proxy(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(url) == expected


# Writes at the end of the loop's pass (`LoopWrites`) -------------------------------------------


@asynccontextmanager
async def stream_server(on_text: Callable[[TwilioSocket, str], None]) -> AsyncIterator[int]:
    """A bare media-stream endpoint on the bridge's stack whose messages go to `on_text`."""

    def on_stream(sock: TwilioSocket) -> None:
        sock.attach(lambda text: on_text(sock, text), lambda _reason: None, lambda: None)

    async with serving(uvicorn_config(FastAPI(), "127.0.0.1", 0, on_stream=on_stream)) as (_, port):
        yield port


def unread_bytes(client: RawClient) -> int:
    """What the kernel holds for the client to read (on loopback a write lands at once)."""
    sock = client.writer.get_extra_info("socket")
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]


async def test_writes_leave_after_the_pass_in_order_and_before_an_urgent_write_or_a_close() -> None:
    seen: dict[str, int] = {}
    client: RawClient | None = None

    def on_text(sock: TwilioSocket, text: str) -> None:
        assert client is not None
        if text == "pass":
            sock.send("one")
            sock.send_batch(["two", "three"])
            seen["during the pass"] = unread_bytes(client)
        elif text == "urgent":
            sock.send("before")
            sock.send_batch(["now"], at_once=True)
            seen["after the urgent write"] = unread_bytes(client)
        elif text == "bye":
            sock.send("last")
            sock.send_close(1000)

    async with stream_server(on_text) as port:
        client, head = await RawClient.connect(port)
        assert head.startswith(b"HTTP/1.1 101")
        client.text("pass")
        assert [await client.read_frame() for _ in range(3)] == [
            (TEXT, b"one"),
            (TEXT, b"two"),
            (TEXT, b"three"),
        ]
        assert seen["during the pass"] == 0  # nothing was written while the pass ran
        client.text("urgent")
        assert [await client.read_frame() for _ in range(2)] == [(TEXT, b"before"), (TEXT, b"now")]
        # both frames were in the client's socket before the handler returned: 2 + 6, 2 + 3
        assert seen["after the urgent write"] == 13
        client.text("bye")
        assert await client.read_frame() == (TEXT, b"last")  # not dropped by the close frame
        kind, payload = await client.read_frame()
        assert (kind, struct.unpack("!H", payload[:2])[0]) == (CLOSE, 1000)
        client.close()


class FakeSocket:
    """A socket as `LoopWrites` sees it: its own queue, written when the pass ends."""

    def __init__(self, writes: LoopWrites, fails: bool) -> None:
        self.writes = writes
        self.fails = fails
        self.queued: list[bytes] = []
        self.written: list[bytes] = []
        self.aborted = False

    def send(self, data: bytes) -> None:
        if not self.queued:
            self.writes.add(self)
        self.queued.append(data)

    def write_queued(self) -> None:
        if self.fails:
            raise RuntimeError("the transport is gone")
        self.written += self.queued
        self.queued = []

    def abort(self) -> None:
        self.aborted = True


async def test_a_write_that_fails_ends_its_own_socket_and_the_passs_other_writes_are_made(
    logs: LogCapture,
) -> None:
    writes = LoopWrites()
    first, broken, last = (FakeSocket(writes, fails) for fails in (False, True, False))
    for sock, data in ((first, b"a"), (broken, b"b"), (last, b"c"), (first, b"d")):
        sock.send(data)
    assert first.written == []
    await asyncio.sleep(0)  # the pass ends: its writes are made
    assert (first.written, last.written) == ([b"a", b"d"], [b"c"])
    assert (first.aborted, broken.aborted, last.aborted) == (False, True, False)
    [line] = logs.events("socket_write_failed")
    assert line["error"] == "RuntimeError('the transport is gone')"
