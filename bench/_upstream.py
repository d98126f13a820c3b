"""A lean fake Realtime server for the load bench: GA events, agent audio at real time, forever.

`bridge/engine` is a whole Realtime service (VAD, items, truncation); under hundreds of calls
it would cost more CPU than the bridge it feeds. This one speaks just enough of the GA
protocol for a bridge to stream: `session.created` on connect, `session.updated` for each
`session.update`, and for `response.create` a `response.created`, one
`response.output_item.added`, then one `response.output_audio.delta` of 20 ms every 20 ms on
an absolute clock until the socket closes. No response ever ends: both directions stay
continuous, the worst case.

Every `input_audio_buffer.append` is timed as it arrives and every delta as it leaves, per
session. A session is tied to its caller by the caller's number, which the bridge's default
persona writes into the session's instructions ("The caller's number is {caller_number}").
The first three bytes of each delta carry its sequence number, so a pcmu bridge (which passes
μ-law through) lets the caller check order and loss exactly.

Run by bench/load.py: prints `PORT <n>` once listening, stops all audio on SIGUSR1 (the end
of the measured window), and on SIGTERM (or after
`--max-seconds`) writes what it measured to `--out` (a pickle) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import math
import pickle
import re
import signal
import sys
import time
from array import array
from typing import Any

import orjson
import uvloop
from _clock import FrameClock
from _wire import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    HandshakeError,
    parse_handshake,
    server_frame,
    server_handshake_response,
)

FRAME_S = 0.020
CALLER_NUMBER = re.compile(r"\+1999(\d{7})")
"""Callers of the bench are `+1999` and a 7-digit index (see _loadgen.py)."""
APPEND_PREFIX = b'{"type":"input_audio_buffer.append"'
AUDIO_KEY = b'"audio":"'
BYTES_PER_FRAME = {"pcm16": 960, "pcmu": 160}  # 20 ms of 24 kHz PCM16 / 8 kHz μ-law


def seq_b64(seq: int) -> str:
    """Four base64 characters holding a 3-byte big-endian sequence number."""
    return base64.b64encode((seq & 0xFFFFFF).to_bytes(3, "big")).decode()


def decode_seq(payload: bytes, key: bytes) -> int:
    """The sequence number at the start of the base64 audio after `key`, or -1."""
    at = payload.find(key)
    if at < 0:
        return -1
    start = at + len(key)
    try:
        return int.from_bytes(base64.b64decode(payload[start : start + 4]), "big")
    except ValueError:
        return -1


def audio_rest_b64(mode: str) -> str:
    """Base64 of one 20 ms frame after its 3 sequence bytes: a 440 Hz tone at -12 dBFS."""
    if mode == "pcm16":
        samples = [round(8000 * math.sin(2 * math.pi * 440 * n / 24000)) for n in range(480)]
        raw = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
    else:
        raw = bytes((0x80 | (n * 37) % 0x7F) for n in range(160))  # any μ-law bytes do
    return base64.b64encode(raw[3:]).decode()


class Session(asyncio.Protocol):
    """One upstream connection, from the bridge's point of view one Realtime session."""

    def __init__(self, server: FakeRealtime) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.open = False
        self.closed = False
        self.reader = FrameReader()
        self.index = next(server.counter)
        self.caller: int | None = None
        self.connected_at = time.monotonic()
        self.closed_at: float | None = None
        self.append_t = array("d")
        self.append_seq = array("l")
        self.delta_due = array("d")
        self.delta_sent = array("d")
        self.other: dict[str, int] = {}
        self.streaming = False
        self.delta_seq = 0
        self.delta_head = self.delta_tail = ""

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.sessions.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.closed_at = time.monotonic()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.open:
            self.head += data
            try:
                parsed = parse_handshake(self.head)
            except HandshakeError:
                self._abort()
                return
            if parsed is None:
                return
            try:
                self._write(server_handshake_response(parsed[1]))
            except HandshakeError:
                self._abort()
                return
            self.open = True
            self._send_json({"type": "session.created", "event_id": self._event_id(), **_session()})
            data = bytes(self.head)
            self.head.clear()
            if not data:
                return
        pcmu = self.server.mode == "pcmu"
        for opcode, payload in self.reader.feed(data):
            if opcode == OP_TEXT:
                if payload.startswith(APPEND_PREFIX):
                    self.append_t.append(now)
                    if pcmu:
                        self.append_seq.append(decode_seq(payload, AUDIO_KEY))
                else:
                    self._on_event(payload)
            elif opcode == OP_PING:
                self._write(server_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                self._write(server_frame(payload[:2], OP_CLOSE))
                self._abort()
                return

    # Protocol ----------------------------------------------------------------------------------

    def _on_event(self, payload: bytes) -> None:
        try:
            event = orjson.loads(payload)
            kind = str(event.get("type"))
        except (orjson.JSONDecodeError, AttributeError):
            kind = "<invalid>"
            event = {}
        self.other[kind] = self.other.get(kind, 0) + 1
        if kind == "session.update":
            session = event.get("session") or {}
            found = CALLER_NUMBER.search(str(session.get("instructions", "")))
            if found and self.caller is None:
                self.caller = int(found.group(1))
            self._send_json({"type": "session.updated", "event_id": self._event_id(), **_session()})
        elif kind == "response.create" and not self.streaming:
            self._start_response()

    def _start_response(self) -> None:
        self.streaming = True
        rid, iid = f"resp_{self.index}", f"item_{self.index}"
        self._send_json(
            {
                "type": "response.created",
                "event_id": self._event_id(),
                "response": {
                    "object": "realtime.response",
                    "id": rid,
                    "status": "in_progress",
                    "output": [],
                },
            }
        )
        self._send_json(
            {
                "type": "response.output_item.added",
                "event_id": self._event_id(),
                "response_id": rid,
                "output_index": 0,
                "item": {
                    "id": iid,
                    "object": "realtime.item",
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                },
            }
        )
        self.delta_head = (
            '{"type":"response.output_audio.delta","event_id":"event_' + str(self.index) + "_"
        )
        self.delta_tail = (
            '","response_id":"'
            + rid
            + '","item_id":"'
            + iid
            + '","output_index":0,"content_index":0,"delta":"'
        )
        self.server.schedule(time.monotonic(), self)

    def send_delta(self, due: float) -> None:
        seq = self.delta_seq
        self.delta_seq = seq + 1
        message = (
            self.delta_head
            + str(seq)
            + self.delta_tail
            + seq_b64(seq)
            + self.server.audio_rest
            + '"}'
        ).encode()
        frame = server_frame(message)
        self.delta_due.append(due)
        self.delta_sent.append(time.monotonic())
        self.transport.write(frame)  # type: ignore[union-attr]

    def _event_id(self) -> str:
        return f"event_{self.index}_{next(self.server.counter)}"

    def _send_json(self, obj: dict[str, Any]) -> None:
        self._write(server_frame(orjson.dumps(obj)))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "caller": self.caller,
            "connected_at": self.connected_at,
            "closed_at": self.closed_at,
            "append_t": self.append_t,
            "append_seq": self.append_seq,
            "delta_due": self.delta_due,
            "delta_sent": self.delta_sent,
            "other": self.other,
        }


def _session() -> dict[str, Any]:
    return {"session": {"object": "realtime.session", "type": "realtime", "id": "sess_bench"}}


class FakeRealtime:
    """The listening socket and one clock for every session's audio."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.audio_rest = audio_rest_b64(mode)
        self.sessions: list[Session] = []
        self.counter = itertools.count()
        self._clock = FrameClock(self._fire)
        self.audio_stopped = False

    def stop_audio(self) -> None:
        """SIGUSR1: the measured window is over; no more deltas, so the callers can tell
        when everything sent has arrived (and what never will)."""
        self.audio_stopped = True

    def schedule(self, due: float, session: Session) -> None:
        self._clock.push(due, session)

    def _fire(self, due: float, session: Session) -> float | None:
        if session.closed or self.audio_stopped:
            return None
        session.send_delta(due)
        return due + FRAME_S


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    fake = FakeRealtime(args.mode)
    server = await loop.create_server(lambda: Session(fake), "127.0.0.1", args.port, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, fake.stop_audio)
    try:
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    except TimeoutError:
        print("upstream: --max-seconds reached", file=sys.stderr)
    server.close()
    for session in fake.sessions:
        session._abort()
    return {"mode": args.mode, "sessions": [s.summary() for s in fake.sessions]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=sorted(BYTES_PER_FRAME), default="pcm16")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args()
    result = uvloop.run(serve(args))
    with open(args.out, "wb") as out:
        pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    main()
