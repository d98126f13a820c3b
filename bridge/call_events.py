"""Call events to the business's systems: `call.started`, `call.ended`, `call.recording`.

Each event is a JSON object with an `id` (`evt_` + 32 hex digits) that stays the same across
retries, so delivery is at least once and a receiver drops a duplicate by its id. It is POSTed
to `CALL_WEBHOOK_URL` and to the persona's `webhook_url` (each its own delivery), signed with
`bridge.signing` under `WEBHOOK_SIGNING_SECRET` (`X-Voicebridge-Signature`, fresh on every
attempt).

A call only ever puts an event on a bounded queue (`send` never waits): a few workers deliver
them with one process-wide HTTP client, retrying connection errors, timeouts, 408, 429 and
5xx with exponential back-off (or the receiver's `Retry-After`, capped). What cannot be
delivered (attempts used up, a 4xx, the queue full, the process ending first) is logged as
`call_event_undelivered` and counted in `voicebridge_call_events_total`. At shutdown `aclose`
waits for the queue only until the deadline it is given, so a dead receiver never holds up
the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from bridge import metrics, signing
from bridge.call.record import iso
from bridge.errors import describe
from bridge.logs import get_logger
from bridge.persona import PersonaBook
from bridge.settings import Settings

log = get_logger("voicebridge.call_events")

QUEUE_LIMIT = 1000
"""Deliveries waiting (queued or between retries) beyond which new ones are dropped."""
WORKERS = 4
MAX_ATTEMPTS = 6
TIMEOUT_S = 5.0
BACKOFF_S = 0.5  # first retry; doubling after each failure
MAX_BACKOFF_S = 60.0  # no wait between attempts is longer, `Retry-After` included
CLOSE_TIMEOUT_S = 3.0
"""How long the process's end waits for events still queued (`aclose`)."""
USER_AGENT = "voicebridge-call-events/1"
_RETRYABLE = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A persona asks for an integration this process cannot provide (logged at start-up)."""

    persona: str
    feature: str
    reason: str


def unavailable_integrations(book: PersonaBook, settings: Settings) -> list[Unavailable]:
    """Each persona's `webhook_url` without `WEBHOOK_SIGNING_SECRET`, and `recording: twilio`
    without Twilio credentials: the calls go on without them, and start-up says why."""
    out: list[Unavailable] = []
    for persona in book:
        if persona.webhook_url and settings.WEBHOOK_SIGNING_SECRET is None:
            out.append(
                Unavailable(
                    persona.name,
                    "webhook_url",
                    "WEBHOOK_SIGNING_SECRET not set (call events are always signed)",
                )
            )
        if persona.recording == "twilio" and (
            settings.TWILIO_ACCOUNT_SID is None or settings.TWILIO_AUTH_TOKEN is None
        ):
            out.append(
                Unavailable(
                    persona.name,
                    "recording",
                    "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN needed for recording: twilio",
                )
            )
    return out


@dataclass(slots=True, eq=False)  # one object per delivery: hashed by identity
class _Delivery:
    event_id: str
    event_type: str
    call_sid: str
    url: str
    body: bytes
    attempts: int = 0
    last_error: str = ""
    retry: asyncio.TimerHandle | None = field(default=None, repr=False)


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(16)


def retry_after_s(value: str | None, now: float) -> float | None:
    """A `Retry-After` header in seconds: delta-seconds or an HTTP date; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, at.timestamp() - now)


class CallEvents:
    """The process's sender of call events; `start()` at start-up, `aclose()` at the end."""

    def __init__(
        self,
        secret: str | None,
        url: str | None = None,
        *,
        queue_limit: int = QUEUE_LIMIT,
        workers: int = WORKERS,
        max_attempts: int = MAX_ATTEMPTS,
        timeout_s: float = TIMEOUT_S,
        backoff_s: float = BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.secret = secret
        self.url = url
        self.queue_limit = queue_limit
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._workers_wanted = workers
        self._transport = transport
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._waiting: set[_Delivery] = set()  # queued, in flight or between retries
        self._idle = asyncio.Event()
        self._idle.set()
        self._client: httpx.AsyncClient | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CallEvents:
        secret = settings.WEBHOOK_SIGNING_SECRET
        return cls(secret.get_secret_value() if secret else None, settings.CALL_WEBHOOK_URL)

    def urls(self, persona_url: str | None) -> tuple[str, ...]:
        """Where one call's events go: `CALL_WEBHOOK_URL` and the persona's `webhook_url`.
        None without `WEBHOOK_SIGNING_SECRET`: an unsigned event would be refused anyway."""
        if self.secret is None:
            return ()
        return tuple(dict.fromkeys(u for u in (self.url, persona_url) if u))

    # The call's side: never waits ---------------------------------------------------------

    def send(
        self, event_type: str, call_sid: str, data: dict[str, Any], urls: tuple[str, ...]
    ) -> str | None:
        """Queue one event for each of `urls`; returns its id (None when there is nowhere to
        send it)."""
        if not urls:
            return None
        event_id = new_event_id()
        body = orjson.dumps(
            {
                "id": event_id,
                "type": event_type,
                "created_at": iso(datetime.now(UTC)),
                "call_sid": call_sid,
                "data": data,
            }
        )
        for url in urls:
            delivery = _Delivery(event_id, event_type, call_sid, url, body)
            if self._closing or len(self._waiting) >= self.queue_limit:
                reason = "shutting down" if self._closing else "queue full"
                self._undelivered(delivery, "dropped", reason)
                continue
            self._waiting.add(delivery)
            self._idle.clear()
            self._queue.put_nowait(delivery)
        return event_id

    # The workers ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            timeout=self.timeout_s,
            transport=self._transport,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )
        self._workers = [
            asyncio.create_task(self._work(), name=f"call-events-{n}")
            for n in range(self._workers_wanted)
        ]

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._attempt(delivery)
            except Exception as exc:  # a bug here must not stop the worker
                self._done(delivery)
                self._undelivered(delivery, "failed", describe(exc))

    async def _attempt(self, delivery: _Delivery) -> None:
        assert self._client is not None
        assert self.secret is not None
        delivery.attempts += 1
        headers = {
            "Content-Type": "application/json",
            signing.HEADER: signing.sign(self.secret, delivery.body, time.time()),
            "X-Voicebridge-Event": delivery.event_type,
            "X-Voicebridge-Event-Id": delivery.event_id,
        }
        wait: float | None = None
        try:
            response = await self._client.post(delivery.url, content=delivery.body, headers=headers)
        except httpx.HTTPError as exc:
            delivery.last_error = describe(exc)
            retryable = True
        else:
            status = response.status_code
            if 200 <= status < 300:
                self._done(delivery)
                metrics.CALL_EVENTS.labels(outcome="delivered").inc()
                return
            delivery.last_error = f"HTTP {status}"
            retryable = status >= 500 or status in _RETRYABLE
            wait = retry_after_s(response.headers.get("retry-after"), time.time())
        if not retryable or delivery.attempts >= self.max_attempts:
            self._done(delivery)
            self._undelivered(delivery, "failed", delivery.last_error)
            return
        if wait is None:
            wait = self.backoff_s * 2 ** (delivery.attempts - 1)
        wait = min(wait, self.max_backoff_s)
        delivery.retry = asyncio.get_running_loop().call_later(
            wait, self._queue.put_nowait, delivery
        )

    def _done(self, delivery: _Delivery) -> None:
        self._waiting.discard(delivery)
        if not self._waiting:
            self._idle.set()

    def _undelivered(self, delivery: _Delivery, outcome: str, error: str) -> None:
        metrics.CALL_EVENTS.labels(outcome=outcome).inc()
        log.warning(
            "call_event_undelivered",
            call_event=delivery.event_type,  # `event` is the log line's own name
            event_id=delivery.event_id,
            call_sid=delivery.call_sid,
            url=_without_query(delivery.url),
            attempts=delivery.attempts,
            error=error,
        )

    @property
    def pending(self) -> int:
        """Deliveries not yet done: queued, in flight or waiting to be retried."""
        return len(self._waiting)

    async def aclose(self, deadline: float) -> None:
        """Stop taking events; deliver what is queued until `deadline` (`time.monotonic()`),
        then drop (and log) the rest."""
        self._closing = True
        remaining = deadline - time.monotonic()
        if self._waiting and remaining > 0 and self._workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), remaining)
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        for delivery in list(self._waiting):
            if delivery.retry is not None:
                delivery.retry.cancel()
            self._done(delivery)
            self._undelivered(delivery, "dropped", delivery.last_error or "the process ended first")
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _without_query(url: str) -> str:
    """The URL as logged: a receiver's query string (or user info) may carry a key."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # nor user:password@ in front of the host
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
