"""Twilio REST call control: redirect a live call to new TwiML, or complete it.

The twilio package's `Client` is synchronous (requests), so every request runs in a worker
thread and the event loop, which carries the audio, never waits on Twilio. A fresh client
per request keeps threads from sharing one `requests.Session`; it costs microseconds next to
the round trip. `TWILIO_API_BASE_URL` is honoured by pointing the client's Api domain at it
(`Domain.base_url` is what every Api request URL is built from).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

# The Calls resource is imported lazily by the client; importing it here moves that cost
# (hundreds of ms) to start-up instead of the first transfer of the process.
import twilio.rest.api.v2010.account.call  # noqa: F401
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from bridge.errors import describe
from bridge.settings import Settings

__all__ = [
    "ALREADY_ENDED",
    "REST_TIMEOUT_S",
    "ControlOutcome",
    "TwilioCallControl",
    "missing_credentials",
]

REST_TIMEOUT_S = 10.0
"""Per request: a transfer that takes longer has failed as far as the caller is concerned."""
ALREADY_ENDED = 20404
"""Twilio's "resource not found": the call is over already (the caller hung up first)."""


@dataclass(frozen=True, slots=True)
class ControlOutcome:
    """How one REST update went. `ok` is also true for a hang-up of a call already ended."""

    ok: bool
    http_status: int | None = None
    code: int | None = None
    call_status: str | None = None
    error: str | None = None
    duration_ms: float = 0.0


def missing_credentials(settings: Settings) -> str | None:
    """Why the bridge cannot control calls over REST, or None when it can."""
    missing = [
        name
        for name, value in (
            ("TWILIO_ACCOUNT_SID", settings.TWILIO_ACCOUNT_SID),
            ("TWILIO_AUTH_TOKEN", settings.TWILIO_AUTH_TOKEN),
        )
        if value is None
    ]
    if missing:
        return f"{' and '.join(missing)} not set (needed for Twilio REST call control)"
    return None


class TwilioCallControl:
    """Redirects and hangs up live calls of one Twilio account."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str = "https://api.twilio.com",
        timeout_s: float = REST_TIMEOUT_S,
    ) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.base_url = base_url
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioCallControl | None:
        """The account's call control, or None without credentials (local mode)."""
        if settings.TWILIO_ACCOUNT_SID is None or settings.TWILIO_AUTH_TOKEN is None:
            return None
        return cls(
            settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN.get_secret_value(),
            settings.TWILIO_API_BASE_URL,
        )

    async def redirect(self, call_sid: str, twiml: str) -> ControlOutcome:
        """Replace what the live call runs (the media stream stops; Twilio sends `stop`)."""
        return await asyncio.to_thread(self._update, call_sid, {"twiml": twiml}, False)

    async def complete(self, call_sid: str) -> ControlOutcome:
        """Hang up. A call that has already ended (404, code 20404) counts as success."""
        return await asyncio.to_thread(self._update, call_sid, {"status": "completed"}, True)

    async def start_recording(self, call_sid: str, status_callback: str) -> ControlOutcome:
        """Ask Twilio to record the live call in two channels (caller, and what the caller
        hears); Twilio posts `status_callback` when the recording is ready."""
        return await asyncio.to_thread(self._record, call_sid, status_callback)

    def _record(self, call_sid: str, status_callback: str) -> ControlOutcome:
        """Runs in a worker thread."""
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000.0, 1)

        try:
            self._client().calls(call_sid).recordings.create(
                recording_channels="dual",
                recording_status_callback=status_callback,
                recording_status_callback_event=["completed"],
                recording_status_callback_method="POST",
            )
        except TwilioRestException as exc:
            code = exc.code if isinstance(exc.code, int) else None
            return ControlOutcome(
                ok=False,
                http_status=exc.status,
                code=code,
                error=exc.msg or f"HTTP {exc.status}",
                duration_ms=elapsed(),
            )
        except Exception as exc:
            return ControlOutcome(ok=False, error=describe(exc), duration_ms=elapsed())
        return ControlOutcome(ok=True, http_status=201, duration_ms=elapsed())

    def _client(self) -> Client:
        client = Client(
            self.account_sid,
            self._auth_token,
            http_client=TwilioHttpClient(timeout=self.timeout_s),
        )
        client.api.base_url = self.base_url
        return client

    def _update(self, call_sid: str, fields: dict[str, str], ended_is_ok: bool) -> ControlOutcome:
        """Runs in a worker thread."""
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000.0, 1)

        try:
            call = self._client().calls(call_sid).update(**fields)
        except TwilioRestException as exc:
            code = exc.code if isinstance(exc.code, int) else None
            ok = ended_is_ok and (exc.status == 404 or code == ALREADY_ENDED)
            return ControlOutcome(
                ok=ok,
                http_status=exc.status,
                code=code,
                call_status="completed" if ok else None,
                error=None if ok else (exc.msg or f"HTTP {exc.status}"),
                duration_ms=elapsed(),
            )
        except Exception as exc:  # connection refused, timeout, TLS: the request never landed
            return ControlOutcome(ok=False, error=describe(exc), duration_ms=elapsed())
        return ControlOutcome(
            ok=True, http_status=200, call_status=call.status, duration_ms=elapsed()
        )
