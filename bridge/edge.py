"""The public port's edge: what an unauthenticated HTTP peer can make us spend, bounded.

Anyone on the internet can open a connection to the public port; nothing about it is
trusted until a webhook's signature is checked (after its body) or a media stream is upgraded
(after its headers). Before that, uvicorn's httptools protocol bounds nothing: it has no
header size or count limit (`h11_max_incomplete_event_size` is the h11 protocol's only),
httptools joins a header value's pieces with `bytes +=` (a 100 MB header cost 22.7 s of CPU,
growing with the square of its size, while the loop stalled), uvicorn joins the URL the same
way, and a connection that sends nothing has no timer until its first response. So a guard
sits in front of the parser, as a subclass of uvicorn's `HttpToolsProtocol`
(`uvicorn.Config(http=edge_protocol())`): uvicorn options cannot express these limits, and a
subclass sees the parser's callbacks, which give the request boundaries on keep-alive
connections, with no second parser.

- Header bytes and lines are counted in `data_received` *before* the parser sees them, per
  request: more than `MAX_HEADER_BYTES` (request line included) or `MAX_HEADER_COUNT`
  header lines is answered 431 and the connection closed, without parsing those bytes. The
  bytes up to the end of a request's headers are fed to the parser on their own, and a
  Content-Length body is fed up to its length, so the next request's headers on the same
  connection are counted from their first byte. (After a chunked body, the headers of a
  request pipelined into the same read are bounded by that read, 256 KiB, not by the cap.)
- A request's headers must be complete `HEADER_TIMEOUT_S` after the connection was accepted
  (or, on a keep-alive connection, after the next request's first byte): else 408 and close,
  or just close if nothing came. uvicorn's keep-alive timer closes a connection idle between
  requests after `KEEPALIVE_IDLE_TIMEOUT_S`.
- At most `MAX_UNAUTHENTICATED_CONNECTIONS` connections speak HTTP at once (upgraded media
  streams are not counted: uvicorn hands them to picows and drops them from its set). A new
  one beyond it evicts the oldest connection still waiting for its headers; if every one is
  mid-request, the newcomer is answered 503 and closed at once. A flood of idle connections
  so costs at most that many file descriptors and never shuts out a caller that sends its
  request promptly.
- A response sent before the request's body was read in full closes the connection: nothing
  more is read (uvicorn would otherwise read and discard a body to its end).
- `read_form` reads a webhook body with a cap and a timeout as it streams.

Once the headers are complete the guard only forwards, and an upgraded connection's protocol
is picows' own (`transport.set_protocol`): the media stream never passes through this code.
Refusals are counted in `voicebridge_http_refused_total` and logged as `http_refused`, at most
one line per reason every `REFUSAL_LOG_INTERVAL_S` (a flood must not become a log flood).

Measured by bench/edge.py (a bridge subprocess, 1,024 file descriptors, one call streaming
through each attack): 2 × 25 MB of small headers, a 100 MB header and 2 × 200 MB webhook
bodies are each refused within 6 ms at under 1 MiB of RSS, with no stall and no frame lost;
1,010 silent or half-upgraded connections keep the bridge under 275 descriptors, none lives
past 5 s, and a call placed during the flood connects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bridge import metrics
from bridge.logs import get_logger

log = get_logger("voicebridge.edge")

# Twilio's webhook and upgrade requests are 1–2 KiB of headers; a proxy in front adds a few
# hundred bytes. 16 KiB is uvicorn's own cap for its h11 protocol and Node's default.
MAX_HEADER_BYTES = 16 * 1024
# Twilio sends about a dozen headers; 100 is Apache's LimitRequestFields and http.client's cap.
MAX_HEADER_COUNT = 100
# Headers arrive in one segment a few milliseconds after the connection (TLS ends at the load
# balancer); 5 s leaves a slow network ample time and frees a silent connection's slot soon.
HEADER_TIMEOUT_S = 5.0
# uvicorn's default, made explicit: an idle keep-alive connection is closed after this.
KEEPALIVE_IDLE_TIMEOUT_S = 5.0
# The 1,024 file descriptors of a default limit: 100 calls hold 200 (Twilio + upstream), up
# to 400 with the local engine's own loopback pair, the process about 40 more; 256 HTTP
# connections leave a quarter of the table free for tool calls and bursts.
MAX_UNAUTHENTICATED_CONNECTIONS = 256
# A webhook's form is under 2 KiB and arrives with its headers.
BODY_TIMEOUT_S = 5.0
REFUSAL_LOG_INTERVAL_S = 10.0

REASONS: dict[str, int | None] = {
    "header_too_large": 431,
    "too_many_headers": 431,
    "header_timeout": 408,
    "idle_timeout": None,  # nothing sent within HEADER_TIMEOUT_S: closed without an answer
    "evicted": None,  # the oldest waiting connection, closed to admit a new one
    "too_many_connections": 503,
    "body_too_large": 413,
    "body_timeout": 408,
}
"""Why a request or connection was refused, and the status it was answered (None: closed);
the `reason` label of `voicebridge_http_refused_total`."""
assert tuple(REASONS) == metrics.HTTP_REFUSAL_REASONS

_PHRASES = {
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def _response(status: int) -> bytes:
    body = _PHRASES[status].lower().encode()
    return (
        f"HTTP/1.1 {status} {_PHRASES[status]}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


_RESPONSES = {status: _response(status) for status in _PHRASES}
_END_OF_HEADERS = b"\r\n\r\n"


@dataclass(frozen=True)
class EdgeLimits:
    """The bounds of one listener. `default_limits()` reads the module's constants."""

    max_header_bytes: int
    max_header_count: int
    header_timeout_s: float
    max_connections: int


def default_limits() -> EdgeLimits:
    """The module's constants, read now (tests lower the timeout with monkeypatch)."""
    return EdgeLimits(
        MAX_HEADER_BYTES, MAX_HEADER_COUNT, HEADER_TIMEOUT_S, MAX_UNAUTHENTICATED_CONNECTIONS
    )


class Refusals:
    """Counts every refusal; logs the first of a reason at once, then at most one line per
    `REFUSAL_LOG_INTERVAL_S` with how many happened since (`count`)."""

    def __init__(self) -> None:
        self._logged_at: dict[str, float] = {}
        self._pending: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def record(self, reason: str) -> None:
        metrics.HTTP_REFUSED.labels(reason=reason).inc()
        now = time.monotonic()
        last = self._logged_at.get(reason)
        if last is None or (now - last >= REFUSAL_LOG_INTERVAL_S and reason not in self._pending):
            self._logged_at[reason] = now
            self._log(reason, 1)
            return
        self._pending[reason] = self._pending.get(reason, 0) + 1
        loop = asyncio.get_running_loop()
        if self._timer is None or self._timer_loop is not loop:  # none yet, or a closed loop's
            delay = max(0.0, last + REFUSAL_LOG_INTERVAL_S - now)
            self._timer, self._timer_loop = loop.call_later(delay, self.flush), loop

    def flush(self) -> None:
        """Log the counts waiting (a timer calls it; a listener's close too)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        now = time.monotonic()
        for reason, count in pending.items():
            self._logged_at[reason] = now
            self._log(reason, count)

    @staticmethod
    def _log(reason: str, count: int) -> None:
        # A connection opened and never used (a browser's preconnect) is no one's fault.
        (log.info if reason == "idle_timeout" else log.warning)(
            "http_refused", reason=reason, status=REASONS[reason], count=count
        )


@dataclass
class EdgeState:
    """What the connections of one listener share: limits, refusals, and the connections
    waiting for their headers, oldest first (the eviction order)."""

    limits: EdgeLimits
    refusals: Refusals = field(default_factory=Refusals)
    waiting: dict[GuardedHttpProtocol, None] = field(default_factory=dict)

    def evict_oldest(self) -> bool:
        """Close the connection that has waited longest for its headers, if any may go."""
        for connection in self.waiting:
            if connection.evictable:
                connection.drop("evicted")
                return True
        return False


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge's limits in front of its parser."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        edge: EdgeState,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.edge = edge
        self._accepted = False
        self._done = False  # refused, dropped or upgraded: no more data for this code
        self._in_headers = True
        self._header_bytes = 0
        self._header_lines = 0
        self._tail = b""  # the last 3 header bytes, for an end of headers split across reads
        self._body_left = 0  # Content-Length bytes still to come (0: not known)
        self._header_timer: asyncio.TimerHandle | None = None

    # Connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        edge = self.edge
        if len(self.connections) >= edge.limits.max_connections and not edge.evict_oldest():
            self._done = True
            transport.write(_RESPONSES[503])
            transport.close()
            edge.refusals.record("too_many_connections")
            return
        self._accepted = True
        super().connection_made(transport)
        edge.waiting[self] = None
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self.edge.waiting.pop(self, None)
        if self._accepted:
            super().connection_lost(exc)

    @property
    def evictable(self) -> bool:
        """Waiting for headers with no response outstanding: closing it loses no request."""
        return not self._done and (self.cycle is None or self.cycle.response_complete)

    def drop(self, reason: str) -> None:
        """Close this connection at an edge limit, answering `REASONS[reason]` if that is
        safe (no response of an earlier request under way)."""
        self._done = True
        self._cancel_header_timer()
        self.edge.waiting.pop(self, None)
        self.connections.discard(self)  # out of the count now, not when the loop gets to it
        status = REASONS[reason]
        if status is not None and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_RESPONSES[status])
        self.transport.close()
        self.edge.refusals.record(reason)

    # Data ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        while data and not self._done:
            if self._in_headers:
                if self._header_timer is None:
                    self._arm_header_timer()
                size = self._count_headers(data)
                if size < 0:
                    return
            elif self._body_left:
                size = min(self._body_left, len(data))
                self._body_left -= size
            else:
                size = len(data)
            piece, data = (data, b"") if size == len(data) else (data[:size], data[size:])
            super().data_received(piece)
            if self._done:  # upgraded: what followed the request is the new protocol's
                protocol = self.transport.get_protocol()
                if data and protocol is not self and not self.transport.is_closing():
                    protocol.data_received(data)  # type: ignore[attr-defined]
                return
            if self.transport.is_closing():
                return

    def _count_headers(self, data: bytes) -> int:
        """How many bytes of `data` belong to the current request's headers (up to and
        including their end); -1 if they break a limit (then the connection is refused)."""
        limits = self.edge.limits
        budget = limits.max_header_bytes - self._header_bytes
        window = data[:budget]
        tail = self._tail
        end = (tail + window).find(_END_OF_HEADERS)
        size = end + len(_END_OF_HEADERS) - len(tail) if end >= 0 else len(window)
        lines = data.count(b"\n", 0, size)
        if self._header_lines + lines > limits.max_header_count + 2:  # + request line, blank
            self.drop("too_many_headers")
            return -1
        if end < 0 and len(data) > budget:
            self.drop("header_too_large")
            return -1
        self._header_bytes += size
        self._header_lines += lines
        self._tail = (tail + data[:size])[-3:]
        return size

    # Parser callbacks (called by httptools inside `super().data_received`) ----------------

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._cancel_header_timer()
        self.edge.waiting.pop(self, None)
        self._body_left = self._content_length()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_headers = True
        self._header_bytes = self._header_lines = self._body_left = 0
        self._tail = b""
        if not self._done:
            self.edge.waiting.pop(self, None)
            self.edge.waiting[self] = None  # waits again, now the newest

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if not self.pipeline and cycle is not None and cycle.more_body:
            # Answered before its body was read (413, or a route that reads none): close
            # rather than read the rest to discard it.
            self.transport.close()
            return
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        self._done = True
        self.edge.waiting.pop(self, None)
        super().handle_websocket_upgrade()

    # Helpers ------------------------------------------------------------------------------

    def _content_length(self) -> int:
        length = 0
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return 0
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return 0
        return max(0, length)

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(
            self.edge.limits.header_timeout_s, self._header_timeout
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self._done and not self.transport.is_closing():
            self.drop("header_timeout" if self._header_bytes else "idle_timeout")


def edge_protocol(limits: EdgeLimits | None = None) -> Callable[..., asyncio.Protocol]:
    """What `uvicorn.Config(http=…)` instantiates per connection: one listener's guarded
    protocol, all its connections sharing one `EdgeState`."""
    state = EdgeState(limits or default_limits())

    def protocol(
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> asyncio.Protocol:
        return GuardedHttpProtocol(config, server_state, app_state, _loop, edge=state)

    return protocol


# Bodies -----------------------------------------------------------------------------------


class BodyRefused(HTTPException):
    """A body over its cap (413) or too slow (408): the route's answer, with the connection
    closed after it."""

    def __init__(self, reason: str) -> None:
        status = REASONS[reason]
        assert status is not None
        super().__init__(status, _PHRASES[status].lower(), headers={"connection": "close"})
        self.reason = reason


async def read_form(
    request: Request, max_bytes: int, timeout_s: float | None = None
) -> dict[str, str]:
    """A urlencoded body read as it streams, at most `max_bytes` of it and within
    `timeout_s`: a declared Content-Length over the cap is refused before any of the body is
    read, a streamed one as soon as it passes the cap. Raises `BodyRefused` (413 or 408),
    which the route answers as it is. `timeout_s` defaults to `BODY_TIMEOUT_S`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        _refuse_body("body_too_large")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S if timeout_s is None else timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    _refuse_body("body_too_large")
                chunks.append(chunk)
    except TimeoutError:
        _refuse_body("body_timeout")
    body = b"".join(chunks).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _refuse_body(reason: str) -> None:
    refusals = _BODY_REFUSALS
    refusals.record(reason)
    raise BodyRefused(reason)


_BODY_REFUSALS = Refusals()
