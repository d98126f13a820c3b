"""Twilio's side of a bidirectional Media Stream, for tests and simulated calls.

It behaves as Twilio does towards a bridge: it signs the WebSocket upgrade, sends
`connected` and `start`, then one 20 ms μ-law frame every 20 ms on an absolute clock
(speech queued with `say`, else silence), plays the bridge's audio through
`PlaybackBuffer` in real time, echoes marks when their audio has played (or at once, as
cleared, on `clear`), and records everything with monotonic times so tests can measure
what the caller heard and when. Anything Twilio would reject is kept in `protocol_errors`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge.sim.audio import BYTES_PER_MS, ULAW_SILENCE
from bridge.sim.errors import StreamClosed, StreamRejected
from bridge.sim.ids import new_sid
from bridge.sim.playback import ClearRecord, MarkEcho, PlaybackBuffer, PlayedChunk
from bridge.sim.webhook import StreamTarget

FRAME_MS = 20
FRAME_BYTES = FRAME_MS * BYTES_PER_MS
"""Twilio sends 20 ms / 160-byte inbound frames in practice."""

DTMF_DIGITS = "0123456789*#"
TWILIO_WS_USER_AGENT = "Twilio.TmeWs/1.0"
SERVER_EVENTS = frozenset({"media", "mark", "clear"})
"""The only events a Media Stream server may send; anything else is Twilio warning 31951."""

Clock = Callable[[], float]


@dataclass(frozen=True)
class InboundFrame:
    """One `media` frame sent to the bridge: the caller's microphone, 20 ms of it."""

    chunk: int
    timestamp_ms: int
    due_at: float
    """When the absolute 20 ms clock scheduled it."""
    sent_at: float
    """When it was actually written to the socket."""
    payload: bytes
    speech_bytes: int
    """How many bytes came from `say` audio (the rest is silence padding)."""


@dataclass
class Utterance:
    """Audio handed to `say`, and when it actually went out (filled in as it is sent)."""

    index: int
    nbytes: int
    queued_at: float
    first_chunk: int | None = None
    last_chunk: int | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        """True once the last byte has been sent."""
        return self.finished_at is not None


@dataclass(frozen=True)
class Received:
    """A message from the bridge as it arrived; `message` is None if it was not JSON."""

    time: float
    raw: str | bytes
    message: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class CloseInfo:
    """How the stream's WebSocket ended; `code` 1006 means no close frame was exchanged."""

    code: int | None
    reason: str
    initiator: Literal["server", "client", "abort"]
    time: float


class TwilioMediaStream:
    """Emulates Twilio's end of one bidirectional `<Connect><Stream>` WebSocket.

    Use as ``async with TwilioMediaStream(target, auth_token=...) as stream:``; leaving the
    block sends `stop` (as a caller hanging up) and awaits every task it started.
    `connect_url` routes the socket elsewhere (a tunnel, another port) while the signature
    still covers the TwiML's URL, as Twilio signs what it was told to request.
    """

    def __init__(
        self,
        target: StreamTarget,
        *,
        auth_token: str | None = None,
        connect_url: str | None = None,
        stream_sid: str | None = None,
        on_message: Callable[[Received], None] | None = None,
        clock: Clock = time.monotonic,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        self.target = target
        self.stream_sid = stream_sid or new_sid("MZ")
        # Twilio drops query strings from <Stream url>; the signature covers no params.
        self.signed_url = _without_query(target.url)
        self.connect_url = connect_url or self.signed_url
        self.playback = PlaybackBuffer()
        """The caller's loudspeaker; `played`, `dropped` and `clears` live here."""
        self.frames: list[InboundFrame] = []
        self.utterances: list[Utterance] = []
        self.received: list[Received] = []
        self.marks: list[MarkEcho] = []
        self.protocol_errors: list[str] = []
        self.started_at: float | None = None
        """Clock time of the `start` message; media timestamps count from here."""

        self._auth_token = auth_token
        self._on_message = on_message
        self._clock = clock
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._ws: ClientConnection | None = None
        self._closed: asyncio.Future[CloseInfo] | None = None
        self._initiator: Literal["server", "client", "abort"] = "server"
        self._sequence = 0
        self._send_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._said = asyncio.Event()
        self._said.set()
        self._speech = bytearray()
        self._unsent: deque[list[Any]] = deque()  # [Utterance, bytes still to send]
        self._reader: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._player: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> TwilioMediaStream:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._closed is not None and not self._closed.done():
                await self.stop()
        finally:
            await self.aclose(raise_errors=exc is None)

    async def connect(self) -> None:
        """Open the socket (signed as Twilio signs it), then send `connected` and `start`."""
        if self._ws is not None:
            raise RuntimeError("this stream is already connected")
        self._closed = asyncio.get_running_loop().create_future()
        headers = {}
        if self._auth_token is not None:
            validator = RequestValidator(self._auth_token)
            headers["X-Twilio-Signature"] = validator.compute_signature(self.signed_url, {})
        try:
            self._ws = await connect(
                self.connect_url,
                additional_headers=headers,
                user_agent_header=TWILIO_WS_USER_AGENT,
                compression=None,
                ping_interval=None,
                open_timeout=self._open_timeout,
                close_timeout=self._close_timeout,
                max_size=None,
            )
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
            raise StreamRejected(exc.response.status_code, body) from exc
        self._reader = asyncio.create_task(self._read_loop(), name="twilio-sim-reader")
        try:
            await self._send_event(
                {"event": "connected", "protocol": "Call", "version": "1.0.0"},
                numbered=False,
            )
            start_message = {
                "event": "start",
                "streamSid": self.stream_sid,
                "start": {
                    "accountSid": self.target.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.target.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": 8000,
                        "channels": 1,
                    },
                    "customParameters": dict(self.target.parameters),
                },
            }
            started_at = await self._send_event(start_message)
        except ConnectionClosed:
            return  # the bridge hung up at once (a failed auth check); the reader records it
        self.started_at = started_at
        if not self._closed.done():
            self._sender = asyncio.create_task(
                self._send_loop(started_at), name="twilio-sim-sender"
            )
            self._player = asyncio.create_task(self._play_loop(), name="twilio-sim-player")

    async def stop(self) -> CloseInfo:
        """End the call as Twilio does: a `stop` message, then a normal close."""
        closed = self._require_connected()
        if closed.done():
            return closed.result()
        self._initiator = "client"
        # Under the send lock neither task is mid-write, so every frame sent is recorded
        # and `stop` is the last message on the wire; Twilio echoes no marks after it.
        async with self._send_lock:
            for task in (self._sender, self._player):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(ConnectionClosed):
                await self._write(
                    {
                        "event": "stop",
                        "streamSid": self.stream_sid,
                        "stop": {
                            "accountSid": self.target.account_sid,
                            "callSid": self.target.call_sid,
                        },
                    }
                )
        await _wait_done(self._sender, self._player)
        self.playback.finish(self._clock())
        assert self._ws is not None
        await self._ws.close()
        return await self.closed

    async def hangup_abruptly(self) -> CloseInfo:
        """Drop the TCP connection with no `stop` and no close frame (a network failure)."""
        closed = self._require_connected()
        if closed.done():
            return closed.result()
        self._initiator = "abort"
        assert self._ws is not None
        self._ws.transport.abort()
        return await self.closed

    async def aclose(self, *, raise_errors: bool = True) -> None:
        """Close without ceremony and await every task; re-raise an emulator crash."""
        if self._ws is not None and (self._closed is None or not self._closed.done()):
            self._initiator = "abort"
            self._ws.transport.abort()
        tasks = [t for t in (self._sender, self._player, self._reader) if t is not None]
        for task in tasks:
            if task is not self._reader:
                task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors and raise_errors:
            raise errors[0]

    @property
    def closed(self) -> asyncio.Future[CloseInfo]:
        """Resolves with `CloseInfo` when the socket closes, whoever closed it.

        Shielded: cancelling a wait on it (`asyncio.wait_for` timing out) leaves the
        record intact for the next reader.
        """
        return asyncio.shield(self._require_connected())

    # -- the caller's microphone -------------------------------------------------------

    def say(self, ulaw: bytes) -> Utterance:
        """Queue μ-law audio for the caller to speak; it goes out 160 bytes per frame."""
        utterance = Utterance(len(self.utterances), len(ulaw), self._clock())
        self.utterances.append(utterance)
        if ulaw:
            self._speech += ulaw
            self._unsent.append([utterance, len(ulaw)])
            self._said.clear()
        else:
            utterance.started_at = utterance.finished_at = utterance.queued_at
        return utterance

    @property
    def speaking(self) -> bool:
        """True while queued speech is still going out."""
        return bool(self._speech)

    async def wait_said(self) -> Utterance | None:
        """Wait until all queued speech has been sent; return the last utterance.

        Raises `StreamClosed` if the socket closes first.
        """
        closed = self.closed
        said = asyncio.ensure_future(self._said.wait())
        try:
            await asyncio.wait({said, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            said.cancel()
            closed.cancel()  # only the shield's outer future; the record stays
        if not self._said.is_set():
            raise StreamClosed("the stream closed before the queued speech was sent")
        return self.utterances[-1] if self.utterances else None

    async def send_dtmf(self, digit: str) -> None:
        """Send a key press as Twilio reports it (`dtmf` on `inbound_track`)."""
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            raise ValueError(f"DTMF digit must be one of {DTMF_DIGITS!r}, got {digit!r}")
        await self._send_event(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    # -- the caller's loudspeaker ------------------------------------------------------

    def heard_audio(self) -> bytes:
        """μ-law of everything played to the caller so far, cut chunks only in part."""
        return self.playback.heard_audio(self._clock())

    @property
    def played_ms_total(self) -> float:
        """Milliseconds of the bridge's audio played so far (8 bytes per ms)."""
        return self.playback.played_ms(self._clock())

    @property
    def played(self) -> list[PlayedChunk]:
        """Chunks that have started playing (the last one may still be playing)."""
        return self.playback.played(self._clock())

    @property
    def dropped(self) -> list[PlayedChunk]:
        """Audio received but thrown away unplayed by a clear or the end of the call."""
        return self.playback.dropped

    @property
    def clears(self) -> list[ClearRecord]:
        """Every `clear`, with how much audio had played at that instant."""
        return self.playback.clears

    @property
    def buffered_ms(self) -> float:
        """Audio the bridge has sent that has not played yet."""
        return self.playback.buffered_ms(self._clock())

    async def wait_playback_idle(self) -> None:
        """Sleep until the audio received so far has played (audio arriving later not included)."""
        remaining = self.playback.idle_at - self._clock()
        if remaining > 0:
            await asyncio.sleep(remaining)

    # -- internals ---------------------------------------------------------------------

    def _require_connected(self) -> asyncio.Future[CloseInfo]:
        if self._closed is None:
            raise RuntimeError("the stream is not connected; call connect() first")
        return self._closed

    async def _send_event(self, message: dict[str, Any], *, numbered: bool = True) -> float:
        async with self._send_lock:
            return await self._write(message, numbered=numbered)

    async def _write(self, message: dict[str, Any], *, numbered: bool = True) -> float:
        """Write one message (the send lock held) and return when it was written."""
        assert self._ws is not None
        if numbered:
            self._sequence += 1
            event = message.pop("event")
            message = {"event": event, "sequenceNumber": str(self._sequence), **message}
        sent_at = self._clock()
        await self._ws.send(json.dumps(message, separators=(",", ":")))
        return sent_at

    async def _send_loop(self, t0: float) -> None:
        """Frame k goes out at t0 + k·20 ms; a late frame is sent at once, never skipped."""
        chunk = 0
        with contextlib.suppress(ConnectionClosed):
            while True:
                chunk += 1
                due = t0 + chunk * FRAME_MS / 1000
                delay = due - self._clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                speech = bytes(self._speech[:FRAME_BYTES])
                del self._speech[:FRAME_BYTES]
                payload = speech + bytes([ULAW_SILENCE]) * (FRAME_BYTES - len(speech))
                sent_at = await self._send_event(
                    {
                        "event": "media",
                        "streamSid": self.stream_sid,
                        "media": {
                            "track": "inbound",
                            "chunk": str(chunk),
                            "timestamp": str(chunk * FRAME_MS),
                            "payload": base64.b64encode(payload).decode("ascii"),
                        },
                    }
                )
                self.frames.append(
                    InboundFrame(chunk, chunk * FRAME_MS, due, sent_at, payload, len(speech))
                )
                self._account_speech(len(speech), chunk, sent_at)

    def _account_speech(self, nbytes: int, chunk: int, sent_at: float) -> None:
        while nbytes and self._unsent:
            entry = self._unsent[0]
            utterance: Utterance = entry[0]
            if utterance.first_chunk is None:
                utterance.first_chunk, utterance.started_at = chunk, sent_at
            taken = min(nbytes, entry[1])
            entry[1] -= taken
            nbytes -= taken
            if entry[1] == 0:
                utterance.last_chunk, utterance.finished_at = chunk, sent_at
                self._unsent.popleft()
        if not self._unsent:
            self._said.set()

    async def _play_loop(self) -> None:
        """Echo each mark when the playback clock reaches it."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                self._wake.clear()
                due = self.playback.next_due()
                if due is None:
                    await self._wake.wait()
                    continue
                delay = due - self._clock()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                    continue
                async with self._send_lock:
                    for echo in self.playback.advance(self._clock()):
                        await self._echo(echo)

    async def _echo(self, echo: MarkEcho) -> None:
        sent_at = await self._write(
            {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": echo.name}}
        )
        self.marks.append(replace(echo, sent_at=sent_at))

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                await self._handle(raw, self._clock())
        except ConnectionClosed:
            pass
        except Exception:
            # An emulator bug (or an on_message callback failing) must not leave the call
            # half alive: drop the line, and let aclose() re-raise the error.
            self._initiator = "abort"
            self._ws.transport.abort()
            raise
        finally:
            self._on_closed()

    def _on_closed(self) -> None:
        now = self._clock()
        self.playback.finish(now)
        for task in (self._sender, self._player):
            if task is not None:
                task.cancel()
        assert self._ws is not None and self._closed is not None
        if not self._closed.done():
            code = self._ws.close_code
            reason = self._ws.close_reason or ""
            self._closed.set_result(CloseInfo(code, reason, self._initiator, now))

    async def _handle(self, raw: str | bytes, now: float) -> None:
        message, error = self._check(raw)
        record = Received(now, raw, message, error)
        self.received.append(record)
        if self._on_message is not None:
            self._on_message(record)
        if error is not None:
            self.protocol_errors.append(f"message #{len(self.received) - 1}: {error}")
            return
        assert message is not None
        event = message["event"]
        if event == "media":
            self.playback.push_media(base64.b64decode(message["media"]["payload"]), now)
        elif event == "mark":
            self.playback.push_mark(message["mark"]["name"], now)
            self._wake.set()
        else:
            async with self._send_lock:
                for echo in self.playback.clear(now):
                    await self._echo(echo)
            self._wake.set()

    def _check(self, raw: str | bytes) -> tuple[dict[str, Any] | None, str | None]:
        """Parse a server message and judge it by Twilio's rules (warning 31951)."""
        if isinstance(raw, bytes):
            return None, "binary WebSocket frame; Twilio reads only JSON text"
        try:
            message = json.loads(raw)
        except ValueError:
            return None, f"not JSON: {raw[:80]!r}"
        if not isinstance(message, dict):
            return None, f"not a JSON object: {raw[:80]!r}"
        event = message.get("event")
        if event not in SERVER_EVENTS:
            return message, f"event {event!r} is not one of media, mark, clear"
        if message.get("streamSid") != self.stream_sid:
            return message, (
                f"{event}: streamSid {message.get('streamSid')!r} is not {self.stream_sid!r}"
            )
        if event == "media":
            return message, _check_media(message.get("media"))
        if event == "mark":
            mark = message.get("mark")
            if not isinstance(mark, dict) or not isinstance(mark.get("name"), str):
                return message, f"mark: needs mark.name as a string, got {mark!r}"
        return message, None


def _check_media(media: object) -> str | None:
    if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
        return f"media: needs media.payload as a string, got {str(media)[:80]!r}"
    try:
        audio = base64.b64decode(media["payload"], validate=True)
    except (binascii.Error, ValueError):
        return "media: payload is not valid base64"
    if audio.startswith(b"RIFF"):
        return "media: payload is a WAV file; Twilio wants raw μ-law with no header"
    return None


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


async def _wait_done(*tasks: asyncio.Task[None] | None) -> None:
    """Wait for tasks to finish without swallowing a cancellation of our own."""
    pending = {task for task in tasks if task is not None}
    if pending:
        await asyncio.wait(pending)
