"""The outbound routes: `POST /calls` places a call; Twilio's callbacks about it connect it
(`/outbound-answer`), say who answered (`/amd-status`) and how it went (`/call-status`).

Thin like the app's other routes: the rules (what a body may say, how many calls go out how
fast) are `bridge.outbound`'s, Twilio is `bridge.dialer`'s. `POST /calls` is the business's
own API, not Twilio's: it is authorized by `Authorization: Bearer VOICEBRIDGE_API_KEY` and
answers 404, as if it were not there, while no key is set. Twilio's callbacks are signed like
every webhook. The detection result reaches the live call through the registry of live
calls (`CallRegistry.answered_by`), or, when it comes before the stream has started, waits in
`Services.answered_by` for it.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from twilio.twiml.voice_response import VoiceResponse

from bridge.after_stream import CallFacts
from bridge.call.record import iso
from bridge.caller_text import clean_number, clean_sid, clean_text
from bridge.calls import CallRegistry
from bridge.dialer import CallPlaced, OutboundUrls, TwilioDialer
from bridge.edge import read_body
from bridge.logs import get_logger
from bridge.outbound import (
    ANSWERED_BY,
    ENDED_UNANSWERED,
    DialError,
    DialRequest,
    OutboundCall,
    OutboundLimits,
    Refused,
    Slot,
    parse_dial,
)
from bridge.persona import Persona
from bridge.services import Services
from bridge.settings import Settings
from bridge.twiml import hangup_twiml

__all__ = [
    "AMD_STATUS_PATH",
    "ANSWER_PATH",
    "CALLS_PATH",
    "CALL_STATUS_PATH",
    "MAX_DIAL_BYTES",
    "OutboundDesk",
    "outbound_router",
]

log = get_logger("voicebridge.outbound")

CALLS_PATH = "/calls"
ANSWER_PATH = "/outbound-answer"
AMD_STATUS_PATH = "/amd-status"
CALL_STATUS_PATH = "/call-status"
MAX_DIAL_BYTES = 16 * 1024
"""A `POST /calls` body: two numbers, a persona name and a context of at most 4 KiB."""
TTL_MARGIN_S = 600.0
"""An outbound call whose end Twilio never reports stops counting this long after the
longest call could have lasted."""

Signed = Callable[[Request, dict[str, str]], bool]
FormReader = Callable[[Request], Any]
StreamTwiml = Callable[[Request, str, Persona, str, str], VoiceResponse]


@dataclass
class OutboundDesk:
    """The process's outbound state: the limits, the dialer (None without Twilio
    credentials), and the calls placed."""

    limits: OutboundLimits
    dialer: TwilioDialer | None
    placed: CallFacts[OutboundCall]

    @classmethod
    def build(cls, settings: Settings, placed: CallFacts[OutboundCall]) -> OutboundDesk:
        ttl_s = settings.MAX_CALL_SECONDS + TTL_MARGIN_S
        return cls(
            limits=OutboundLimits(
                settings.MAX_OUTBOUND_CALLS, settings.OUTBOUND_CALLS_PER_SECOND, ttl_s
            ),
            dialer=TwilioDialer.from_settings(settings),
            placed=placed,
        )


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _authorized(header: str | None, key: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), key.encode())


def outbound_router(
    services: Services,
    calls: CallRegistry,
    desk: OutboundDesk,
    signed: Signed,
    read_form: FormReader,
    stream_twiml: StreamTwiml,
) -> APIRouter:
    """The outbound routes of one app. `signed(request, form)` checks Twilio's signature;
    `read_form(request)` reads a callback's form (capped) as the app's other routes do;
    `stream_twiml(request, call_sid, persona, caller, called)` is the app's `<Connect><Stream>`."""
    router = APIRouter()
    settings, book = services.settings, services.personas

    def urls_for(request: Request, dial: DialRequest) -> OutboundUrls:
        host, scheme = request.headers.get("host"), request.url.scheme
        answer = settings.callback_url(ANSWER_PATH, host, scheme)
        return OutboundUrls(
            answer=f"{answer}?persona={quote(dial.persona.name, safe='')}",
            amd_status=settings.callback_url(AMD_STATUS_PATH, host, scheme),
            call_status=settings.callback_url(CALL_STATUS_PATH, host, scheme),
        )

    @router.post(CALLS_PATH)
    async def place_call(request: Request) -> Response:
        """Place an outbound call (docs/reference.md, `POST /calls`)."""
        if settings.VOICEBRIDGE_API_KEY is None:
            return PlainTextResponse("Not Found", status_code=404)
        key = settings.VOICEBRIDGE_API_KEY.get_secret_value()
        if not _authorized(request.headers.get("authorization"), key):
            log.warning("outbound_call_refused", status=401, reason="bad or missing API key")
            return JSONResponse(
                {"error": "a valid 'Authorization: Bearer <VOICEBRIDGE_API_KEY>' is required"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        try:
            dial = parse_dial(await read_body(request, MAX_DIAL_BYTES), book)
        except DialError as exc:
            log.warning("outbound_call_refused", status=exc.status, reason=exc.message)
            return _error(exc.status, exc.message)
        if desk.dialer is None and settings.signed:
            reason = "TWILIO_ACCOUNT_SID is not set: no calls can be placed"
            log.warning("outbound_call_refused", status=503, reason=reason)
            return _error(503, reason)
        if calls.draining:
            log.warning("outbound_call_refused", status=503, reason="draining")
            return _error(503, "draining: this process is shutting down")
        slot = desk.limits.reserve(time.monotonic())
        if isinstance(slot, Refused):
            log.info("outbound_call_refused", status=429, reason=slot.reason)
            return JSONResponse(
                {"error": slot.reason},
                status_code=429,
                headers={"retry-after": str(slot.retry_after_s)},
            )
        if desk.dialer is None:
            return await simulated(dial, slot)
        placed: CallPlaced | None = None
        try:
            # In its turn: Twilio's pace, one call every 1/rate seconds (`TwilioDialer`).
            placed = await desk.dialer.place(dial.to, dial.from_, urls_for(request, dial))
        finally:
            if placed is None or placed.call_sid is None:
                desk.limits.release(slot.ticket)
        if placed.call_sid is None:
            log.warning(
                "outbound_call_failed",
                to=dial.to,
                persona=dial.persona.name,
                http_status=placed.http_status,
                code=placed.code,
                error=placed.error,
                duration_ms=placed.duration_ms,
            )
            return _error(
                502,
                "Twilio did not place the call",
                twilio_code=placed.code,
                twilio_message=placed.error,
                twilio_status=placed.http_status,
            )
        desk.limits.placed(slot.ticket, placed.call_sid, time.monotonic())
        await desk.placed.record(
            placed.call_sid, OutboundCall(dial.to, dial.from_, dial.persona.name, dial.context)
        )
        log.info(
            "outbound_call_placed",
            call_sid=placed.call_sid,
            to=dial.to,
            from_number=dial.from_,
            persona=dial.persona.name,
            duration_ms=placed.duration_ms,
        )
        return JSONResponse({"call_sid": placed.call_sid}, status_code=201)

    async def simulated(dial: DialRequest, slot: Slot) -> Response:
        """Local mode (no Twilio credentials): nobody to ring. The call is placed in this
        process only, for `voicebridge dial` to play Twilio's part and the callee's."""
        call_sid = "CA" + secrets.token_hex(16)
        desk.limits.placed(slot.ticket, call_sid, time.monotonic())
        await desk.placed.record(
            call_sid, OutboundCall(dial.to, dial.from_, dial.persona.name, dial.context)
        )
        log.info(
            "outbound_call_placed",
            call_sid=call_sid,
            to=dial.to,
            from_number=dial.from_,
            persona=dial.persona.name,
            simulated=True,
        )
        body = {
            "call_sid": call_sid,
            "simulated": True,
            "persona": dial.persona.name,
            "from": dial.from_,
            "answer_url": f"{ANSWER_PATH}?persona={quote(dial.persona.name, safe='')}",
        }
        return JSONResponse(body, status_code=201)

    @router.post(ANSWER_PATH)
    async def outbound_answer(request: Request) -> Response:
        """Twilio's `Url` of a call placed here, as the callee answers: the stream, as for
        an inbound call, with the callee as the "caller" of the persona's templates and our
        number as the one a transfer calls from."""
        form = await read_form(request)
        call_sid = clean_sid(form.get("CallSid"))
        if not signed(request, form):
            log.warning(
                "outbound_answer_rejected", call_sid=call_sid, reason="bad or missing signature"
            )
            return PlainTextResponse("invalid signature", status_code=403)
        name = clean_text(request.query_params.get("persona"), 64)
        persona = book.get(name) if name else None
        if persona is None:
            log.warning("persona_unknown", persona=name, using=book.default.name)
            persona = book.default
        if not calls.accepting:
            log.warning(
                "outbound_answer_rejected",
                call_sid=call_sid,
                reason="draining" if calls.draining else "at capacity",
            )
            return Response(content=str(hangup_twiml()), media_type="text/xml")
        callee, ours = clean_number(form.get("To")), clean_number(form.get("From"))
        log.info("outbound_answer", call_sid=call_sid, persona=persona.name)
        twiml = stream_twiml(request, call_sid, persona, callee, ours)
        return Response(content=str(twiml), media_type="text/xml")

    @router.post(AMD_STATUS_PATH)
    async def amd_status(request: Request) -> Response:
        """Twilio's `AsyncAmdStatusCallback`: who answered, for the live call (or its stream
        to come)."""
        form = await read_form(request)
        call_sid = clean_sid(form.get("CallSid"))
        if not signed(request, form):
            log.warning("amd_status_rejected", call_sid=call_sid, reason="bad or missing signature")
            return PlainTextResponse("invalid signature", status_code=403)
        answered_by = clean_text(form.get("AnsweredBy"), 32)
        if answered_by not in ANSWERED_BY:
            log.warning("amd_status_rejected", call_sid=call_sid, reason="unknown AnsweredBy")
            answered_by = "unknown"  # the agent greets rather than stay silent
        live = calls.answered_by(call_sid, answered_by)
        if not live:
            await services.answered_by.record(call_sid, answered_by)
        log.info(
            "amd_status",
            call_sid=call_sid,
            answered_by=answered_by,
            live=live,
            detection_ms=_int_or_none(form.get("MachineDetectionDuration")),
        )
        return Response(status_code=204)

    def send_unanswered(call_sid: str, placed: OutboundCall, status: str) -> None:
        """`call.ended` for a call nobody answered: the same shape as an answered call's,
        with no transcript, and Twilio's status as its reason (`no_answer`, `busy`, …)."""
        events = services.call_events
        persona = book.get(placed.persona)
        urls = events.urls(persona.webhook_url if persona else None) if events else ()
        if events is None or not urls:
            return
        now = iso(datetime.now(UTC))
        data = {
            "from": placed.from_,
            "to": placed.to,
            "persona": placed.persona,
            "started_at": now,
            "ended_at": now,
            "reason": status.replace("-", "_"),
            "duration_s": 0.0,
            "transcript": [],
            "tool_calls": [],
            "recording": None,
            "direction": "outbound",
        }
        events.send("call.ended", call_sid, data, urls)

    @router.post(CALL_STATUS_PATH)
    async def call_status(request: Request) -> Response:
        """Twilio's status callback of a call placed here: its end frees its place."""
        form = await read_form(request)
        call_sid = clean_sid(form.get("CallSid"))
        if not signed(request, form):
            log.warning(
                "call_status_rejected", call_sid=call_sid, reason="bad or missing signature"
            )
            return PlainTextResponse("invalid signature", status_code=403)
        status = clean_text(form.get("CallStatus"), 32)
        if status in ENDED_UNANSWERED or status == "completed":
            counted = desk.limits.ended(call_sid)
            unanswered = await desk.placed.take(call_sid)  # still here: its stream never started
            if unanswered is not None and status in ENDED_UNANSWERED:
                send_unanswered(call_sid, unanswered, status)
            (log.info if status == "completed" else log.warning)(
                "outbound_call_ended",
                call_sid=call_sid,
                outcome=status,
                known=counted,
                duration_s=_int_or_none(form.get("CallDuration")),
            )
        else:
            log.info("outbound_call_status", call_sid=call_sid, status=status)
        return Response(status_code=204)

    return router


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and len(text) < 10 else None
