"""The two WebSocket ends of a call, on picows: C framing, callbacks, no task per message.

Every 20 ms a call moves a Twilio `media` in, an `append` up, a delta down, a `media` and a
`mark` out and a mark echo in, on each of hundreds of calls. With an asyncio WebSocket library
each of those messages costs a queue, a future and a task switch; here a frame arrives as a
callback and goes straight into the call's state machine. That, and one write per batch of
Twilio messages (a frame and its mark leave in one syscall), is most of what issue 10
measured.

Writes are made at the end of the event loop's pass (`LoopWrites`), not as each message is
handled. Under load one pass handles many messages (about ten at 100 calls), 20 µs of work
apart; a write wakes its reader if it sleeps, and on loopback (the load bench, a proxy on the
same host) the writer pays for that wake-up and for the reader's TCP receive in its own system
time. Written one by one, the answers to a pass's messages wake the peers again and again;
written together, a peer woken by the first finds the rest waiting. Measured at 100 pcm16
calls in 15 pairs of alternating runs: wake-ups the bridge caused fell from about 5,900 to
4,300 a second, and its CPU was lower in 14 pairs, by 0.23 ms per call-second at the median
(about 6 %); the latency's median rose 0.1 ms, its p99 did not move. In pcmu, and at 200
calls, the change was within the noise. A write that must leave at once (a barge-in's
`clear`, a close frame) first makes the pending ones, so each socket's messages keep their
order. The pending bytes of a pass are not in `write_buffer_size()` until the pass ends.

- `MessageSocket`: one side of a call. Text messages are delivered in order to the handler
  attached with `attach()`; until then they wait in a short queue read with `receive()`
  (the few messages before Twilio's `start`). Fragmented messages are reassembled up to the
  size cap; binary frames and invalid UTF-8 are reported per message, the socket stays open.
- `TwilioSocket`: the server end for `/media-stream`, handed the TCP connection by uvicorn
  after it parsed the upgrade request (`uvicorn_ws_protocol`, which also routes by path), so
  the routes and the media stream share one port (docs/reference.md, "HTTP and WebSocket routes").
- `UpstreamSocket` / `open_upstream`: the client end to the Realtime model.

Size: just over 600 lines on purpose: the framing, the pass's batched writes, the bounds on
a peer that does not read and the hand-over from uvicorn are one concern, shared by both
ends of a call (they differ only in a few lines each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import urllib.request
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_connect,
)
from picows.picows import WSProtocol

from bridge.logs import get_logger

# picows logs every accepted connection at INFO; calls log themselves.
logging.getLogger("picows").setLevel(logging.WARNING)

# Twilio's messages are a few hundred bytes: 64 KiB refuses nonsense early (close 1009).
MEDIA_STREAM_MAX_BYTES = 64 * 1024
MEDIA_STREAM_PATH = b"/media-stream"
CLOSE_TIMEOUT_S = 1.0  # how long a closing side waits for the peer's close frame
PRESTART_QUEUE_LIMIT = 500  # messages kept before a handler is attached (10 s of media)
# What one socket may queue towards a peer that does not read, beyond the kernel's send
# buffer: past it the connection is closed (1008). Above the call's own check on Twilio audio
# (`stream.TWILIO_WRITE_LIMIT_BYTES`, 1 MiB), which ends a call first with its own reason;
# this one also covers pongs, the time before `start` and the upstream.
SEND_BUFFER_LIMIT_BYTES = 2 * 1024 * 1024
# Pings and pongs a peer may send: a burst, then a steady rate. Twilio and browsers send
# none; a model's server pings every few seconds. Past it the connection is closed (1008).
CONTROL_FRAME_BURST = 50
CONTROL_FRAMES_PER_S = 10.0
# How long a peer closed for not reading has to read our close frame before the TCP
# connection is cut and what it left unread is freed.
UNREAD_CLOSE_GRACE_S = 0.25
CLOSE_POLICY_VIOLATION = 1008

_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE
_CONTINUATION = WSMsgType.CONTINUATION
_BINARY = WSMsgType.BINARY
_PING = WSMsgType.PING
_PONG = WSMsgType.PONG

log = get_logger("voicebridge.ws")


class LoopWrites:
    """The writes of one pass of an event loop, made together once its callbacks have run.

    A socket that queues a message in a pass joins with `add` (once: it keeps its own queue);
    the first of a pass schedules `flush` with `call_soon`, which runs after every I/O
    callback of the pass and before the loop polls again, and has each socket write its
    queue. A write that fails ends its own socket only, never the other calls' writes.
    """

    __slots__ = ("_sockets",)

    def __init__(self) -> None:
        self._sockets: list[Any] = []

    def add(self, sock: Any) -> None:
        """`sock.write_queued()` at the end of the pass; `sock` also has `abort()`, called
        if the write raises (the line it logs has no call_sid: the call's own end, logged as
        the socket closes, has)."""
        sockets = self._sockets
        if not sockets:
            asyncio.get_running_loop().call_soon(self.flush)
        sockets.append(sock)

    def flush(self) -> None:
        sockets = self._sockets
        if not sockets:
            return
        self._sockets = []
        for sock in sockets:
            try:
                sock.write_queued()
            except Exception as exc:  # a bug or a socket in a state we did not foresee
                log.error("socket_write_failed", error=repr(exc), socket=type(sock).__name__)
                sock.abort()


_LOOP_WRITES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWrites] = (
    weakref.WeakKeyDictionary()
)


def loop_writes() -> LoopWrites:
    """The running loop's `LoopWrites` (one per loop, made on first use)."""
    loop = asyncio.get_running_loop()
    writes = _LOOP_WRITES.get(loop)
    if writes is None:
        writes = _LOOP_WRITES[loop] = LoopWrites()
    return writes


class MessageSocket(WSListener):  # type: ignore[misc]
    """Text messages in, as callbacks once attached; the transport for sending."""

    def __init__(self, max_message_bytes: int, batch_writes: bool = True) -> None:
        self.max_message_bytes = max_message_bytes
        self._writes = loop_writes() if batch_writes else None
        self._queued: list[Any] = []  # this pass's messages, for `write_queued`
        self.transport: WSTransport | None = None
        self.raw: asyncio.Transport | None = None
        self.open = False
        self.close_code: int | None = None  # what the peer sent, or what we sent first
        self.closed = asyncio.get_running_loop().create_future()
        self._on_text: Callable[[str], None] | None = None
        self._on_error: Callable[[str], None] | None = None
        self._on_closed: Callable[[], None] | None = None
        self._queue: deque[str | ValueError | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._fragments: list[bytes] | None = None
        self._fragment_type = _TEXT
        self._fragment_bytes = 0
        self._closing = False
        self.pongs = 0  # pongs received: a peer that answers pings is alive, if slow
        self._writing_paused = False  # the transport's buffer is above its high-water mark
        self.send_buffer_limit = SEND_BUFFER_LIMIT_BYTES
        self._control_burst = float(CONTROL_FRAME_BURST)
        self._control_rate = CONTROL_FRAMES_PER_S
        self._control_allowance = self._control_burst
        self._control_at = 0.0

    # picows callbacks --------------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        self.open = True

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT and frame.fin:
            self._deliver(frame.get_payload_as_bytes())
        elif kind is _CLOSE:
            self.write_queued()  # what we sent before the peer's close goes before our answer
            self.close_code = self.close_code or _close_code(frame)
            if not transport.is_close_frame_sent:
                code = frame.get_close_code()
                transport.send_close(WSCloseCode.OK if code is WSCloseCode.NO_INFO else code)
            transport.disconnect()
        elif kind is _TEXT or kind is _BINARY:
            if self._fragments is not None:
                self._error("new message inside a fragmented one")
                self._fragments = None
            if frame.fin:
                self._error("binary frame (Media Streams is text only)")
                return
            self._fragments = [frame.get_payload_as_bytes()]
            self._fragment_type = kind
            self._fragment_bytes = frame.payload_size
        elif kind is _CONTINUATION:
            self._continue(frame)
        elif kind is _PING or kind is _PONG:
            self._control(transport, frame)

    def _control(self, transport: WSTransport, frame: WSFrame) -> None:
        """A ping is answered here, not by picows: a pong is a write like any other, and a
        peer that pings without reading would otherwise fill our memory with answers."""
        if self._closing:
            return
        now = asyncio.get_running_loop().time()
        allowance = self._control_allowance + (now - self._control_at) * self._control_rate
        self._control_at = now
        if allowance < 1.0:
            self._refuse("ws_control_flood", "too many control frames", burst=self._control_burst)
            return
        self._control_allowance = min(allowance, self._control_burst) - 1.0
        if frame.msg_type is _PING:
            transport.send_pong(frame.get_payload_as_bytes())
            self._check_backlog()
        else:
            self.pongs += 1

    def ping(self) -> None:
        """Ask the peer for a pong (is it still there?); `pongs` counts the answers."""
        if self.open and not self._closing and self.transport is not None:
            self.transport.send_ping()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.open = False
        handshake = transport.close_handshake
        if self.close_code is None and handshake is not None and handshake.sent is not None:
            self.close_code = handshake.sent.code.value
        if not self.closed.done():
            self.closed.set_result(None)
        if self._on_closed is not None:
            callback, self._on_closed = self._on_closed, None
            callback()
        else:
            self._enqueue(None)

    # Receiving ---------------------------------------------------------------------------------

    def attach(
        self,
        on_text: Callable[[str], None],
        on_error: Callable[[str], None],
        on_closed: Callable[[], None],
    ) -> None:
        """From now on messages go to `on_text` as they arrive; the queued ones go first."""
        queued, self._queue = self._queue, deque()
        self._on_text, self._on_error, self._on_closed = on_text, on_error, on_closed
        for item in queued:
            if item is None:
                self._on_closed = None
                on_closed()
                return
            if isinstance(item, ValueError):
                on_error(str(item))
            else:
                on_text(item)
        if not self.open and self._on_closed is not None:
            self._on_closed = None
            on_closed()

    def detach(self) -> None:
        """Stop delivering: the call is over, late messages are dropped."""
        self._on_text = lambda _text: None
        self._on_error = lambda _reason: None
        self._on_closed = None

    async def receive(self) -> str | None:
        """The next text message before a handler is attached; None once the socket closed.
        Raises ValueError for a message that was not valid text."""
        while not self._queue:
            if not self.open and self.transport is not None:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._queue.popleft()
        if isinstance(item, ValueError):
            raise item
        return item

    def _enqueue(self, item: str | ValueError | None) -> None:
        if len(self._queue) >= PRESTART_QUEUE_LIMIT and item is not None:
            item = ValueError("too many messages before the call was set up")
            self._queue.clear()
        self._queue.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _error(self, reason: str) -> None:
        if self._on_error is not None:
            self._on_error(reason)
        else:
            self._enqueue(ValueError(reason))

    def _continue(self, frame: WSFrame) -> None:
        if self._fragments is None:
            self._error("continuation frame without a message to continue")
            return
        self._fragment_bytes += frame.payload_size
        if self._fragment_bytes > self.max_message_bytes:
            self._fragments = None
            self.send_close(int(WSCloseCode.MESSAGE_TOO_BIG.value), "message too big")
            return
        self._fragments.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        payload, self._fragments = b"".join(self._fragments), None
        if self._fragment_type is _BINARY:
            self._error("binary frame (Media Streams is text only)")
            return
        self._deliver(payload)

    def _deliver(self, payload: bytes) -> None:
        """One whole text message: to the handler, or queued until there is one."""
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            self._error("text frame is not valid UTF-8")
            return
        if self._on_text is not None:
            self._on_text(text)
        else:
            self._enqueue(text)

    def pause_writing(self) -> None:
        """Nothing waits for the socket: the call's send policy reads `write_buffer_size`.
        From now on each write also checks the buffer against `send_buffer_limit`."""
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False

    def _check_backlog(self) -> None:
        """Close a peer that lets more than `send_buffer_limit` bytes wait for it."""
        raw = self.raw
        if raw is not None and not self._closing:
            buffered = raw.get_write_buffer_size()
            if buffered > self.send_buffer_limit:
                self._refuse(
                    "ws_peer_not_reading",
                    "peer not reading",
                    buffered=buffered,
                    limit=self.send_buffer_limit,
                )

    def _refuse(self, event: str, reason: str, **fields: Any) -> None:
        """End a misbehaving peer's connection: a log line, a 1008 close frame, and the TCP
        connection cut after `UNREAD_CLOSE_GRACE_S` whether or not the peer answered (one that
        does not read never will), which frees what it left unread."""
        raw = self.raw
        peer = raw.get_extra_info("peername") if raw is not None else None
        log.warning(
            event,
            socket=type(self).__name__,
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None,
            code=CLOSE_POLICY_VIOLATION,
            **fields,
        )
        self.send_close(CLOSE_POLICY_VIOLATION, reason)
        asyncio.get_running_loop().call_later(UNREAD_CLOSE_GRACE_S, self._cut)

    def _cut(self) -> None:
        if self.open and self.transport is not None:
            self.transport.disconnect(graceful=False)

    # Sending and closing -----------------------------------------------------------------------

    def send(self, text: str) -> None:
        """One text message, written at the end of the loop's pass (or at once, unbatched)."""
        if self.open and not self._closing and self.transport is not None:
            if self._writes is None:
                self.transport.send(_TEXT, text)
                if self._writing_paused:
                    self._check_backlog()
            else:
                queued = self._queued
                if not queued:
                    self._writes.add(self)
                queued.append(text)

    def write_queued(self) -> None:
        """Write this pass's queued messages now, in order (`LoopWrites` calls it at the end
        of the pass; a write that must leave at once, and a close, call it first)."""
        queued = self._queued
        if not queued:
            return
        self._queued = []
        raw = self.raw
        if self.open and self.transport is not None and raw is not None and not raw.is_closing():
            self._write(queued)
            if self._writing_paused:
                self._check_backlog()

    def _write(self, queued: list[Any]) -> None:
        """Frame and write the messages `send` queued (picows frames and masks them)."""
        send = self.transport.send
        for text in queued:
            send(_TEXT, text)

    def abort(self) -> None:
        """Drop the connection without a close handshake (a write that failed)."""
        if self.transport is not None:
            self.transport.disconnect(graceful=False)

    def write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size() if self.raw is not None else 0

    def send_close(self, code: int, reason: str = "") -> None:
        """Send a close frame (once); the socket ends when the peer answers or `close` gives up."""
        if self.transport is None or not self.open or self._closing:
            return
        self._closing = True
        self.write_queued()
        self.close_code = self.close_code or code
        self.transport.send_close(WSCloseCode(code), reason.encode()[:120])

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close handshake: our close frame, the peer's answer (up to `CLOSE_TIMEOUT_S`), then
        the TCP close. Waiting for the answer matters: closing at once while the peer still
        sends could make its kernel reset the connection before it read our close frame. A
        peer that does not answer in time (stalled, gone) is cut off."""
        if self.transport is None:
            return
        self.send_close(code, reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), CLOSE_TIMEOUT_S)
        if not self.closed.done():
            self.transport.disconnect(graceful=False)


# Unmasked text frame headers (FIN + text opcode): one byte of length below 126, else 126
# and 16 bits of length below 65536.
_SHORT_TEXT_HEADERS = tuple(bytes((0x81, size)) for size in range(126))
_MEDIUM_TEXT_HEADER = struct.Struct("!BBH")


class TwilioSocket(MessageSocket):
    """The server end of one `/media-stream` connection."""

    def __init__(
        self,
        request: WSUpgradeRequest,
        max_message_bytes: int,
        on_connected: Callable[[TwilioSocket], None],
        batch_writes: bool = True,
    ) -> None:
        super().__init__(max_message_bytes, batch_writes)
        self._on_connected = on_connected
        self.headers: Mapping[str, str] = request.headers

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def on_ws_connected(self, transport: WSTransport) -> None:
        super().on_ws_connected(transport)
        self._on_connected(self)

    def send(self, text: str) -> None:
        """One text message, as `send_batch` writes it."""
        self.send_batch((text,))

    def send_batch(self, messages: Iterable[str], at_once: bool = False) -> int:
        """Several text messages in one write: a frame and its mark leave in one syscall
        (and all of a pass's, at its end). Server frames are unmasked, so the framing is a
        header in front of each payload. `at_once` writes now, after what this pass queued,
        instead of at its end. Returns the bytes the transport holds unsent (before this
        pass's writes)."""
        raw = self.raw
        if not self.open or self._closing or raw is None:
            return 0
        writes = self._writes
        if writes is None:
            parts: list[bytes] = []
        else:
            parts = self._queued
            if not parts and not at_once:
                writes.add(self)
        append = parts.append
        for message in messages:
            payload = message.encode()
            size = len(payload)
            if size < 126:
                append(_SHORT_TEXT_HEADERS[size])
            elif size < 65536:
                append(_MEDIUM_TEXT_HEADER.pack(0x81, 126, size))
            else:
                append(b"\x81\x7f" + size.to_bytes(8, "big"))
            append(payload)
        if writes is None:
            if not raw.is_closing():
                raw.write(b"".join(parts))
                if self._writing_paused:
                    self._check_backlog()
        elif at_once:
            self.write_queued()
        return raw.get_write_buffer_size()

    def _write(self, queued: list[Any]) -> None:
        self.raw.write(b"".join(queued))  # type: ignore[union-attr]


class UpstreamSocket(MessageSocket):
    """The client end to the Realtime model."""


def _close_code(frame: WSFrame) -> int | None:
    try:
        return int(frame.get_close_code().value)
    except (ValueError, AttributeError):
        return None


# The server end inside uvicorn ----------------------------------------------------------------


class _UpgradedProtocol(WSProtocol):  # type: ignore[misc]
    """picows' server protocol, given the upgrade request uvicorn already read from the socket
    (uvicorn replays it through `data_received`; picows itself reads into its own buffer)."""

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            buffer = self.get_buffer(len(view))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]


def uvicorn_ws_protocol(
    on_stream: Callable[[TwilioSocket], None],
    *,
    batch_writes: bool = True,
) -> Callable[..., asyncio.BaseProtocol]:
    """What `uvicorn.Config(ws=…)` instantiates for each upgrade request: picows takes over the
    connection. `/media-stream` (any query string) becomes a `TwilioSocket` handed to
    `on_stream` once its handshake is done; any other path is answered 404. `batch_writes`:
    see `LoopWrites` (the bench's floor turns it off)."""
    logger = logging.getLogger("picows.server")

    def route(request: WSUpgradeRequest) -> WSListener | None:
        if request.path.split(b"?", 1)[0] != MEDIA_STREAM_PATH:
            return None
        return TwilioSocket(request, MEDIA_STREAM_MAX_BYTES, on_stream, batch_writes)

    def protocol(**_uvicorn: Any) -> asyncio.BaseProtocol:
        return _UpgradedProtocol(
            None,  # host:port (client side only)
            None,  # path (client side only)
            False,  # server side
            route,
            logger,
            True,  # disconnect on a listener exception
            5.0,  # handshake timeout
            False,  # no auto ping: Twilio keeps the line busy with media every 20 ms
            20.0,  # auto-ping idle timeout (unused without auto ping)
            20.0,  # auto-ping reply timeout (unused without auto ping)
            WSAutoPingStrategy.PING_WHEN_IDLE,
            False,  # pings are answered by MessageSocket, which bounds what waits unread
            MEDIA_STREAM_MAX_BYTES,  # frame cap; fragments are capped in MessageSocket
            None,  # extra headers
            16 * 1024,  # initial read buffer
        )

    return protocol


# The client end -------------------------------------------------------------------------------


async def open_upstream(
    url: str,
    headers: Mapping[str, str],
    *,
    max_message_bytes: int,
    timeout_s: float,
    send_buffer_bytes: int,
    ping_interval_s: float = 20.0,
    batch_writes: bool = True,
) -> UpstreamSocket:
    """Connect and complete the WebSocket handshake within `timeout_s`.

    Raises OSError, TimeoutError or a picows handshake error (a 401 is `WSInvalidStatusError`).
    `batch_writes`: see `LoopWrites`.
    """
    transport, listener = await asyncio.wait_for(
        ws_connect(
            lambda: UpstreamSocket(max_message_bytes, batch_writes),
            url,
            extra_headers=dict(headers),
            websocket_handshake_timeout=timeout_s,
            enable_auto_ping=True,
            enable_auto_pong=False,  # answered by MessageSocket (see `_control`)
            auto_ping_idle_timeout=ping_interval_s,
            auto_ping_reply_timeout=ping_interval_s,
            max_frame_size=max_message_bytes,
            proxy=proxy_for(url),
            use_aiofastnet=False,
        ),
        timeout_s,
    )
    assert isinstance(listener, UpstreamSocket)
    raw = transport.underlying_transport
    sock = raw.get_extra_info("socket")
    if sock is not None:
        # A fixed kernel send buffer: autotuning lets it grow to megabytes (a minute of audio)
        # before a stalled upstream shows at all.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    return listener


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (`HTTPS_PROXY` for wss, `HTTP_PROXY` for ws,
    `ALL_PROXY`), unless `NO_PROXY` exempts its host or it is loopback (the local engine):
    egress proxies keep working."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    proxies = urllib.request.getproxies()
    proxy = proxies.get("https" if parts.scheme == "wss" else "http") or proxies.get("all")
    if not proxy or host in _LOOPBACK or urllib.request.proxy_bypass(host):
        return None
    return proxy
