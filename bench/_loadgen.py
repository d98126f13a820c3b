"""N Twilio callers in one process: the lean load generator of bench/load.py.

Each caller does what Twilio does towards a bridge, and no more: the voice webhook
(`POST /incoming-call`), the `<Stream>` WebSocket with `connected` and `start` (carrying the
TwiML's `<Parameter>`s), then one 20 ms μ-law `media` frame every 20 ms on an absolute clock.
Agent audio is "played" at real time: each received frame starts when the one before it ends
(or when it arrives, if the caller's ear was idle), and each `mark` is echoed when the audio
before it has played. `bridge/sim/media_stream.py` does all this with full recording and
checks; at hundreds of calls it would cost more CPU than the bridge, so this one keeps a single
timer heap for every caller's sends and echoes and records only timestamps.

Callers are `+1999` and a 7-digit index, so the fake upstream can tie each session to its
caller. The first three bytes of every frame carry its sequence number (pcmu bridges pass
them through unchanged). What the generator measures about itself, how late each frame left
against its schedule, decides whether a run is valid.

Prints `WINDOW <start> <end>` (time.monotonic) once every call streams, and writes its
measurements to `--out` (a pickle) after hanging up.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from array import array
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import uvloop
from _clock import FrameClock
from _upstream import audio_rest_b64, decode_seq, seq_b64
from _wire import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    client_frame,
    client_handshake,
)

FRAME_S = 0.020
MEDIA_PREFIX = b'{"event":"media"'
PAYLOAD_KEY = b'"payload":"'
TWILIO_USER_AGENT = "Twilio.TmeWs/1.0"
ACCOUNT_SID = "AC" + "0" * 32
TO_NUMBER = "+15550002222"


def caller_number(index: int) -> str:
    return f"+1999{index:07d}"


class Caller(asyncio.Protocol):
    """One call's Media Stream socket."""

    def __init__(self, gen: LoadGenerator, index: int) -> None:
        self.gen = gen
        self.index = index
        self.call_sid = "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.expected_accept = b""
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.open = False
        self.reader = FrameReader()
        self.messages_sent = 0
        self.frame_seq = 0
        self.sending = False
        # Measurements.
        self.sent_due = array("d")
        self.sent_t = array("d")
        self.recv_t = array("d")
        self.recv_seq = array("l")
        self.marks_received = 0
        self.marks_echoed = 0
        self.echo_late = array("d")
        self.clears = 0
        self.gaps = 0
        self.other: dict[str, int] = {}
        self.play_end = 0.0
        self.close_code: int | None = None

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.sending = False
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.open:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.head[: self.head.find(b"\r\n")])
            head = bytes(self.head[:end]).lower()
            rest = bytes(self.head[end + 4 :])
            self.head.clear()
            if b" 101 " not in status or self.expected_accept.lower() not in head:
                self.opened.set_exception(ConnectionError(f"upgrade refused: {status!r}"))
                self.transport.close()  # type: ignore[union-attr]
                return
            self.open = True
            self.opened.set_result(None)
            if not rest:
                return
            data = rest
        for opcode, payload in self.reader.feed(data):
            if opcode == OP_TEXT:
                if payload.startswith(MEDIA_PREFIX):
                    self._on_media(payload, now)
                else:
                    self._on_other(payload, now)
            elif opcode == OP_PING:
                self._write(client_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
                self._write(client_frame(payload[:2], OP_CLOSE))
                self.transport.close()  # type: ignore[union-attr]

    # Receiving -------------------------------------------------------------------------------

    def _on_media(self, payload: bytes, now: float) -> None:
        self.recv_t.append(now)
        self.gen.last_media = now
        if self.gen.check_seq:
            self.recv_seq.append(decode_seq(payload, PAYLOAD_KEY))
        # The caller's ear: this frame plays after the one before it, or now if idle.
        if now > self.play_end:
            if self.play_end:
                self.gaps += 1
            self.play_end = now
        self.play_end += FRAME_S

    def _on_other(self, payload: bytes, now: float) -> None:
        try:
            message = orjson.loads(payload)
            event = str(message.get("event"))
        except (orjson.JSONDecodeError, AttributeError):
            event = "<invalid>"
            message = {}
        if event == "mark":
            self.marks_received += 1
            name = str((message.get("mark") or {}).get("name", ""))
            # Echoed once the audio sent before it has played.
            self.gen.push(max(self.play_end, now), 1, self, name)
        elif event == "clear":
            # Twilio drops the queued audio and echoes every pending mark at once.
            self.clears += 1
            self.play_end = now
            self.gen.flush_echoes(self)
        else:
            self.other[event] = self.other.get(event, 0) + 1

    # Sending ---------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_json(self, obj: dict[str, Any]) -> None:
        self.messages_sent += 1
        self._write(client_frame(orjson.dumps(obj)))

    def send_start(self, parameters: dict[str, str]) -> None:
        self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.send_json(
            {
                "event": "start",
                "sequenceNumber": str(self.messages_sent + 1),
                "start": {
                    "accountSid": ACCOUNT_SID,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": parameters,
                },
                "streamSid": self.stream_sid,
            }
        )
        self.media_head = '{"event":"media","sequenceNumber":"'
        self.media_tail = '"},"streamSid":"' + self.stream_sid + '"}'
        self.mark_head = '{"event":"mark","streamSid":"' + self.stream_sid + '","sequenceNumber":"'

    def send_frame(self, due: float) -> None:
        seq = self.frame_seq
        self.frame_seq = seq + 1
        self.messages_sent += 1
        message = (
            self.media_head
            + str(self.messages_sent)
            + '","media":{"track":"inbound","chunk":"'
            + str(seq + 1)
            + '","timestamp":"'
            + str(seq * 20)
            + '","payload":"'
            + seq_b64(seq)
            + self.gen.audio_rest
            + self.media_tail
        ).encode()
        frame = client_frame(message)
        self.sent_due.append(due)
        self.sent_t.append(time.monotonic())
        self._write(frame)

    def send_echo(self, name: str, due: float) -> None:
        self.messages_sent += 1
        self.marks_echoed += 1
        self.echo_late.append(time.monotonic() - due)
        message = (
            self.mark_head
            + str(self.messages_sent)
            + '","mark":{"name":"'
            + name.replace("\\", "\\\\").replace('"', '\\"')
            + '"}}'
        ).encode()
        self._write(client_frame(message))

    async def hang_up(self, timeout: float) -> None:
        """Twilio's `stop`, then a normal close; wait for the bridge to close its side."""
        self.sending = False
        if self.open:
            self.send_json({"event": "stop", "streamSid": self.stream_sid, "stop": {}})
            self._write(client_frame((1000).to_bytes(2, "big"), OP_CLOSE))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "sent_due": self.sent_due,
            "sent_t": self.sent_t,
            "recv_t": self.recv_t,
            "recv_seq": self.recv_seq,
            "marks_received": self.marks_received,
            "marks_echoed": self.marks_echoed,
            "echo_late": self.echo_late,
            "clears": self.clears,
            "gaps": self.gaps,
            "other": self.other,
            "close_code": self.close_code,
        }


class LoadGenerator:
    """Every caller's frames and mark echoes on one absolute clock (a heap and one timer)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.check_seq = args.mode == "pcmu"
        self.audio_rest = audio_rest_b64("pcmu")  # Twilio always sends 8 kHz μ-law
        self.callers: list[Caller] = []
        self.failures: list[str] = []
        self._loop = asyncio.get_running_loop()
        self._clock = FrameClock(self._fire)
        self._echoes: dict[Caller, list[tuple[float, str]]] = {}
        self.stop_sending_at = float("inf")
        self.last_media = 0.0

    # The clock -------------------------------------------------------------------------------

    def push(self, due: float, kind: int, caller: Caller, arg: str = "") -> None:
        """Schedule a frame (kind 0, repeating every 20 ms) or a mark echo (kind 1)."""
        self._clock.push(due, (kind, caller, arg))

    def flush_echoes(self, caller: Caller) -> None:
        """On `clear`: every pending echo of `caller` is due now."""
        now = time.monotonic()
        for _, (_, _, name) in self._clock.take(lambda e: e[0] == 1 and e[1] is caller):
            caller.send_echo(name, now)

    def _fire(self, due: float, event: tuple[int, Caller, str]) -> float | None:
        kind, caller, arg = event
        if kind == 0:
            if caller.sending and due < self.stop_sending_at:
                caller.send_frame(due)
                return due + FRAME_S
        elif caller.open:
            caller.send_echo(arg, due)
        return None

    # Placing calls ---------------------------------------------------------------------------

    async def webhook(self, caller: Caller) -> tuple[str, dict[str, str]]:
        """POST /incoming-call as Twilio does; the `<Stream url>` and its `<Parameter>`s."""
        base = urlsplit(self.args.url)
        form = urlencode(
            {
                "CallSid": caller.call_sid,
                "AccountSid": ACCOUNT_SID,
                "From": caller_number(caller.index),
                "To": TO_NUMBER,
                "CallStatus": "ringing",
                "Direction": "inbound",
                "ApiVersion": "2010-04-01",
            }
        ).encode()
        reader, writer = await asyncio.open_connection(base.hostname, base.port)
        writer.write(
            (
                f"POST /incoming-call HTTP/1.1\r\nHost: {base.netloc}\r\n"
                "User-Agent: TwilioProxy/1.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(form)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + form
        )
        response = await reader.read()
        writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"webhook answered {head[:40]!r}")
        root = ET.fromstring(body)
        stream = root.find("./Connect/Stream")
        if stream is None:
            raise ConnectionError("TwiML without <Connect><Stream>")
        parameters = {p.get("name", ""): p.get("value", "") for p in stream.iter("Parameter")}
        return stream.get("url", ""), parameters

    async def place(self, index: int, phase: float, gate: asyncio.Semaphore) -> None:
        caller = Caller(self, index)
        async with gate:
            try:
                url, parameters = await self.webhook(caller)
                target = urlsplit(url)
                request, caller.expected_accept = client_handshake(
                    target.netloc, target.path or "/", TWILIO_USER_AGENT
                )
                await self._loop.create_connection(lambda: caller, target.hostname, target.port)
                caller._write(request)
                await asyncio.wait_for(caller.opened, 10.0)
            except Exception as exc:
                self.failures.append(f"call {index}: {type(exc).__name__}: {exc}")
                if caller.transport is not None:
                    caller.transport.abort()
                return
        self.callers.append(caller)
        caller.send_start(parameters)
        caller.sending = True
        # The first frame on this caller's slot of the shared 20 ms grid.
        now = time.monotonic()
        due = self.grid + phase
        if due < now:
            due += ((now - due) // FRAME_S + 1) * FRAME_S
        self.push(due, 0, caller)

    async def run(self) -> dict[str, Any]:
        args = self.args
        self.grid = time.monotonic()
        gate = asyncio.Semaphore(args.connect_concurrency)
        started = time.monotonic()
        await asyncio.gather(
            *(self.place(k, FRAME_S * k / args.calls, gate) for k in range(args.calls))
        )
        ready = time.monotonic()
        window = (ready + args.warmup, ready + args.warmup + args.duration)
        print(f"WINDOW {window[0]:.6f} {window[1]:.6f} {len(self.callers)}", flush=True)
        # Frames stop shortly after the window; the tail lets the last ones cross the bridge.
        self.stop_sending_at = window[1] + 0.2
        await asyncio.sleep(max(0.0, self.stop_sending_at - time.monotonic()) + args.grace)
        # The fake upstream stops its audio at the window's end: once no frame has come for
        # `--quiet` seconds, whatever has not arrived never will (a late frame is not a drop).
        give_up = time.monotonic() + args.max_drain
        while True:
            now = time.monotonic()
            if now >= give_up or now - self.last_media >= args.quiet:
                break
            await asyncio.sleep(0.1)
        hung_up = time.monotonic()
        await asyncio.gather(*(c.hang_up(5.0) for c in self.callers))
        self._clock.close()
        return {
            "calls_requested": args.calls,
            "connect_seconds": ready - started,
            "window": window,
            "hung_up": hung_up,
            "failures": self.failures,
            "wakeups": self._clock.wakeups,
            "callers": [c.summary() for c in self.callers],
        }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    return await asyncio.wait_for(LoadGenerator(args).run(), args.max_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the bridge's base URL")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--mode", choices=("pcm16", "pcmu"), default="pcm16")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--grace", type=float, default=1.0, help="seconds after the last frame")
    parser.add_argument("--quiet", type=float, default=0.5, help="seconds without media")
    parser.add_argument("--max-drain", type=float, default=20.0, help="cap on the wait for it")
    parser.add_argument("--connect-concurrency", type=int, default=16)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args()
    try:
        result = uvloop.run(amain(args))
    except TimeoutError:
        print("loadgen: --max-seconds reached", file=sys.stderr)
        sys.exit(3)
    with open(args.out, "wb") as out:
        pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    main()
