"""What a peer that pings and never reads can make the bridge hold, over real loopback sockets:
before `start` and during a call, the server's memory stays bounded and the connection is
closed (1008) once the socket's send buffer passes its cap, or once pings come too fast."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time

import httpx
import pytest

import bridge.ws as ws
from tests.conftest import LogCapture, RunningBridge
from tests.test_bad_input import bridge_and_fake, start_message
from tests.test_ws import CLOSE, PING, PONG, RawClient

MIB = 1024 * 1024
MAX_PINGS = 200_000  # 26 MB of pings: far past the kernel's buffers and the 2 MiB cap
BATCH = 1000
PAYLOAD = b"p" * 125  # the largest control frame payload; no byte of it is 0x88 or 0x8a


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def ping_frames(count: int) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(PAYLOAD))
    return (struct.pack("!BB", 0x80 | PING, 0x80 | len(PAYLOAD)) + mask + masked) * count


async def connect_slow_reader(port: int) -> RawClient:
    """A client with a 4 KiB receive buffer, so what it does not read stays on the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /media-stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    return RawClient(reader, writer)


async def enter(phase: str, client: RawClient, bridge: RunningBridge, logs: LogCapture) -> None:
    if phase == "in a call":
        client.text(start_message())
        await logs.wait_for("call_started")
        assert bridge.calls.active_calls == 1


async def read_to_end(client: RawClient, timeout: float) -> tuple[bytes, bool]:
    """Everything the server still sends, and whether it closed or reset the connection
    within `timeout` (False: the connection was still open when the time ran out)."""
    data = bytearray()

    async def drain() -> None:
        while chunk := await client.reader.read(1 << 20):
            data.extend(chunk)

    try:
        await asyncio.wait_for(drain(), timeout)
    except ConnectionResetError:
        pass
    except TimeoutError:
        return bytes(data), False
    return bytes(data), True


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's frames (unmasked), but a partial last one."""
    out, index = [], 0
    while index + 2 <= len(data):
        opcode, size = data[index] & 0x0F, data[index + 1] & 0x7F
        start = index + 2
        if size == 126:
            (size,), start = struct.unpack("!H", data[start : start + 2]), start + 2
        if start + size > len(data):
            break
        out.append((opcode, data[start : start + size]))
        index = start + size
    return out


@pytest.mark.parametrize("phase", ["before start", "in a call"])
async def test_a_peer_that_pings_and_never_reads_is_closed_past_the_send_buffer_cap(
    phase: str, logs: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws, "CONTROL_FRAME_BURST", 10**9)  # the buffer cap, not the rate limit
    # A close handshake would wait this long for the peer's answer: only the cut after
    # UNREAD_CLOSE_GRACE_S ends the connection within the read's 5 s below.
    monkeypatch.setattr(ws, "CLOSE_TIMEOUT_S", 30.0)
    batch = ping_frames(BATCH)
    async with bridge_and_fake() as (bridge, _fake):
        client = await connect_slow_reader(bridge.port)
        await enter(phase, client, bridge, logs)
        before = peak = rss_bytes()
        sent = 0
        refused: list[dict[str, object]] = []
        while sent < MAX_PINGS and not refused:
            client.writer.write(batch)
            await client.writer.drain()
            sent += BATCH
            await asyncio.sleep(0)  # the server's pass: read, answer, check
            peak = max(peak, rss_bytes())
            refused = logs.events("ws_peer_not_reading")
        assert refused, f"{sent} pings sent unread and the connection is still open"
        noticed = time.monotonic()
        data, cut = await read_to_end(client, 5.0)
        ended = time.monotonic() - noticed
        client.close()
        line = refused[0]
        assert line["code"] == 1008 and line["socket"] == "TwilioSocket"
        assert ws.SEND_BUFFER_LIMIT_BYTES < line["buffered"] <= ws.SEND_BUFFER_LIMIT_BYTES + 256
        assert peak - before <= 64 * MIB
        # Cut after UNREAD_CLOSE_GRACE_S, whatever the peer does (the time includes reading
        # what the server had buffered through a 4 KiB window).
        assert cut, f"still open {ended:.2f} s after the refusal"
        received = frames(data)
        assert received and {kind for kind, _ in received} <= {PONG, CLOSE, 0x1}
        if received[-1][0] == CLOSE:  # the peer read fast enough to see the close frame
            assert struct.unpack("!H", received[-1][1][:2])[0] == 1008
        async with httpx.AsyncClient() as http:  # the process carries on
            assert (await http.get(f"{bridge.base_url}/healthz")).status_code == 200
        if phase == "in a call":
            await logs.wait_for("call_ended")
            assert bridge.calls.active_calls == 0


@pytest.mark.parametrize("phase", ["before start", "in a call"])
async def test_pings_past_the_burst_close_the_connection_1008(phase: str, logs: LogCapture) -> None:
    async with bridge_and_fake() as (bridge, _fake):
        client, _ = await RawClient.connect(bridge.port)
        await enter(phase, client, bridge, logs)
        client.writer.write(ping_frames(500))
        data, closed = await read_to_end(client, 3.0)
        client.close()
    assert closed
    received = frames(data)
    pongs = [payload for kind, payload in received if kind == PONG]
    # the burst, and what the steady rate refilled while the 500 pings were read (ms)
    assert ws.CONTROL_FRAME_BURST <= len(pongs) <= ws.CONTROL_FRAME_BURST + 5
    assert set(pongs) == {PAYLOAD}
    assert received[-1][0] == CLOSE and struct.unpack("!H", received[-1][1][:2])[0] == 1008
    (line,) = logs.events("ws_control_flood")
    assert line["code"] == 1008 and line["burst"] == ws.CONTROL_FRAME_BURST


async def test_pings_at_the_steady_rate_are_all_answered(logs: LogCapture) -> None:
    async with bridge_and_fake() as (bridge, _fake):
        client, _ = await RawClient.connect(bridge.port)
        for index in range(ws.CONTROL_FRAME_BURST + 10):  # the burst, then the steady rate
            if index >= ws.CONTROL_FRAME_BURST:
                await asyncio.sleep(1.2 / ws.CONTROL_FRAMES_PER_S)
            client.frame(PING, b"%d" % index)
            assert await client.wait_for(PONG) == b"%d" % index
        client.close()
    assert not logs.events("ws_control_flood")
