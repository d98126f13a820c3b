"""Twilio REST for outbound calls: `Calls.create` with answering-machine detection.

Like call control (`bridge.tools.call_control`, whose client and `TWILIO_API_BASE_URL`
handling it shares), the synchronous twilio `Client` runs in a worker thread, so the event
loop never waits on Twilio. The call is placed with asynchronous detection
(`MachineDetection=DetectMessageEnd`, `AsyncAmd=true`): the callee is connected to the agent
at once, and `/amd-status` learns later whether a person or a machine answered, so a person
hears no silence while Twilio listens.

Twilio takes a number's calls at its pace (1 a second by default) and queues the rest; the
bridge keeps to it itself: the requests leave one at a time, each at least the interval (and
25 ms for the network's jitter) after the one before actually left its worker thread,
however late that thread started.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from bridge.errors import describe
from bridge.settings import Settings
from bridge.tools.call_control import TwilioCallControl

__all__ = ["PACE_MARGIN_S", "STATUS_EVENTS", "CallPlaced", "OutboundUrls", "TwilioDialer"]

PACE_MARGIN_S = 0.025
"""Added to the interval: what Twilio measures includes the network's jitter (and a first
request's connection set-up after it left)."""

STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
"""The progress events `/call-status` is sent (Twilio sends only `completed` without them)."""


@dataclass(frozen=True, slots=True)
class OutboundUrls:
    """Where Twilio asks about an outbound call: the TwiML when it is answered, the
    detection result, the call's progress."""

    answer: str
    amd_status: str
    call_status: str


@dataclass(frozen=True, slots=True)
class CallPlaced:
    """How a `Calls.create` went: `call_sid` on success, else Twilio's `code` and `error`
    (or only `error` when Twilio was not reached)."""

    call_sid: str | None
    http_status: int | None = None
    code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0


class TwilioDialer(TwilioCallControl):
    """Places outbound calls from one Twilio account, `per_second` at most."""

    def __init__(self, account_sid: str, auth_token: str, base_url: str, per_second: float) -> None:
        super().__init__(account_sid, auth_token, base_url)
        self.interval_s = 1.0 / per_second + PACE_MARGIN_S
        self._turn = asyncio.Lock()
        self._last_sent = -math.inf

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioDialer | None:  # type: ignore[override]
        """The account's dialer, or None without credentials (local mode)."""
        if settings.TWILIO_ACCOUNT_SID is None or settings.TWILIO_AUTH_TOKEN is None:
            return None
        return cls(
            settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN.get_secret_value(),
            settings.TWILIO_API_BASE_URL,
            settings.OUTBOUND_CALLS_PER_SECOND,
        )

    async def place(self, to: str, from_: str, urls: OutboundUrls) -> CallPlaced:
        """`Calls.create`, in its turn: it waits for the previous request to have left and
        for the interval since, but not for Twilio's answer to it."""
        loop = asyncio.get_running_loop()
        async with self._turn:
            wait = self._last_sent + self.interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            sent: asyncio.Future[float] = loop.create_future()

            def on_sent(at: float) -> None:
                loop.call_soon_threadsafe(_settle, sent, at)

            result = asyncio.ensure_future(
                asyncio.to_thread(self._create, to, from_, urls, on_sent)
            )
            done, _ = await asyncio.wait({sent, result}, return_when=asyncio.FIRST_COMPLETED)
            self._last_sent = sent.result() if sent in done else time.monotonic()
        return await result

    def _client_signalling(self, on_sent: Callable[[float], None]) -> Client:
        """A client whose request tells `on_sent` the moment it goes out: what the pace
        counts from."""
        http = TwilioHttpClient(timeout=self.timeout_s)
        http.session = _SignalledSession(on_sent)
        client = Client(self.account_sid, self._auth_token, http_client=http)
        client.api.base_url = self.base_url
        return client

    def _create(
        self, to: str, from_: str, urls: OutboundUrls, on_sent: Callable[[float], None]
    ) -> CallPlaced:
        """Runs in a worker thread."""
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000.0, 1)

        try:
            call = self._client_signalling(on_sent).calls.create(
                to=to,
                from_=from_,
                url=urls.answer,
                method="POST",
                machine_detection="DetectMessageEnd",
                async_amd="true",
                async_amd_status_callback=urls.amd_status,
                async_amd_status_callback_method="POST",
                status_callback=urls.call_status,
                status_callback_event=list(STATUS_EVENTS),
                status_callback_method="POST",
            )
        except TwilioRestException as exc:
            message = (exc.msg or f"HTTP {exc.status}").removeprefix("Unable to create record: ")
            return CallPlaced(
                None,
                http_status=exc.status,
                code=exc.code if isinstance(exc.code, int) else None,
                error=message,
                duration_ms=elapsed(),
            )
        except Exception as exc:  # connection refused, timeout, TLS: the request never landed
            return CallPlaced(None, error=describe(exc), duration_ms=elapsed())
        return CallPlaced(call.sid, http_status=201, duration_ms=elapsed())


class _SignalledSession(requests.Session):
    def __init__(self, on_sent: Callable[[float], None]) -> None:
        super().__init__()
        self._on_sent = on_sent

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self._on_sent(time.monotonic())
        return super().send(request, **kwargs)


def _settle(future: asyncio.Future[float], at: float) -> None:
    if not future.done():
        future.set_result(at)
