"""The HTTP and WebSocket surface (docs/reference.md): webhook, media stream, health, metrics.

Routes are thin: they read the request, ask the process's `Services` (settings, personas,
signatures) and `CallRegistry` (live calls, draining), and hand the media stream to the call
runtime (`stream.py`), which never imports this module. The HTTP routes are FastAPI;
`/media-stream` is served on the same port by picows, to which uvicorn hands every WebSocket
upgrade (`server.uvicorn_config`, `ws.uvicorn_ws_protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from twilio.twiml.voice_response import VoiceResponse

from bridge import metrics
from bridge.after_stream import Transfer, TransferNotAnswered
from bridge.call_events import CLOSE_TIMEOUT_S, unavailable_integrations
from bridge.call_report import RECORDING_STATUS_PATH, report_twilio_recording
from bridge.caller_text import clean_number, clean_sid, clean_text
from bridge.calls import CallRegistry
from bridge.edge import read_form
from bridge.engine.local import local_engine
from bridge.logs import get_logger
from bridge.loop_lag import watch_loop_lag
from bridge.outbound_routes import OutboundDesk, outbound_router
from bridge.persona import Persona, PersonaBook
from bridge.services import Services
from bridge.settings import Settings
from bridge.shared import CALL_LEASE_S, Resilient
from bridge.softphone import softphone_enabled, softphone_router
from bridge.softphone.transcripts import FEED
from bridge.stream_start import handle_media_stream
from bridge.tools import unavailable_tools, web_search
from bridge.twiml import (
    DIAL_ENDED_PATH,
    STREAM_ENDED_PATH,
    STREAM_STATUS_PATH,
    after_stream_twiml,
    busy_twiml,
    connect_twiml,
    fallback_twiml,
    hangup_twiml,
    transfer_twiml,
)
from bridge.ws import TwilioSocket

log = get_logger("voicebridge.app")

MAX_FORM_BYTES = 64 * 1024


def _twiml(body: VoiceResponse) -> Response:
    return Response(content=str(body), media_type="text/xml")


async def _form(request: Request) -> dict[str, str]:
    if request.method != "POST":
        return dict(request.query_params)
    # Read with the cap as it streams: past it, 413 and nothing more read (bridge.edge).
    return await read_form(request, MAX_FORM_BYTES)


async def renew_leases(services: Services, calls: CallRegistry) -> None:
    """Every live call's place in the deployment's count lasts `CALL_LEASE_S` unless renewed:
    renewed here, all of this process's at once, three times a lease."""
    while True:
        await asyncio.sleep(CALL_LEASE_S / 3)
        sids = calls.live_sids()
        if sids:
            await services.shared.renew(sids)


def create_app(settings: Settings, personas: PersonaBook | Persona | None = None) -> FastAPI:
    """Build the ASGI app. `app.state.services` and `app.state.calls` are the process's
    services and live calls; `app.state.on_stream` takes each media-stream socket."""
    if isinstance(personas, Persona):
        personas = PersonaBook([personas])
    book = personas or PersonaBook.builtin()
    with_softphone = softphone_enabled(settings)
    services = Services.build(settings, book, FEED if with_softphone else None)
    calls = CallRegistry(settings.MAX_CONCURRENT_CALLS)
    for entry in unavailable_tools(book, settings):
        log.warning("tool_unavailable", **asdict(entry))
    for problem in unavailable_integrations(book, settings):
        log.warning("integration_unavailable", **asdict(problem))

    def on_stream(ws: TwilioSocket) -> None:
        calls.serve(handle_media_stream(ws, services, calls))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The built-in local Realtime engine, when it is the provider (issue 8).
        wanted = settings.provider == "local" and not settings.REALTIME_URL
        async with local_engine(wanted and services.upstream.local_engine_url is None) as engine:
            if engine is not None:
                services.upstream.use_local_engine(engine.url)
            if settings.TAVILY_API_KEY is not None:
                await web_search.prepare()  # not on the event loop in the first search
            if services.tools is not None:  # HTTP tools' client, MCP listings (and refresh)
                await services.tools.start()
            # Everything loaded so far (libraries, compiled kernels, personas) lives as long as
            # the process. Frozen, it is out of the collector's sight: a full collection during
            # calls then walks only what calls allocate: a full collection at 100 calls paused
            # the event loop for 148 ms before (an audible gap in every call of the process)
            # and 4.5 ms with the freeze (gc.callbacks under bench/load.py).
            if isinstance(services.shared, Resilient):
                await services.shared.report()
            gc.collect()
            gc.freeze()
            lag = asyncio.create_task(watch_loop_lag(), name="loop-lag")
            leases = asyncio.create_task(renew_leases(services, calls), name="call-leases")
            if services.call_events is not None:
                await services.call_events.start()
            try:
                yield
            finally:
                lag.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lag
                await calls.close_all()
                leases.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await leases
                await services.shared.aclose()
                if services.tools is not None:
                    await services.tools.aclose()
                # The calls' last events and recordings: bounded, after the calls' drain.
                if services.recordings is not None:
                    await services.recordings.aclose()
                if services.call_events is not None:
                    await services.call_events.aclose(time.monotonic() + CLOSE_TIMEOUT_S)

    app = FastAPI(
        title="voicebridge", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.services = services
    app.state.calls = calls
    app.state.on_stream = on_stream
    if with_softphone:
        app.include_router(softphone_router(personas=book))

    def signed(request: Request, form: dict[str, str]) -> bool:
        if services.signatures is None:
            return True
        params = form if request.method == "POST" else {}
        return services.signatures.webhook_valid(
            request.url.path,
            request.url.query,
            params,
            request.headers.get("x-twilio-signature"),
        )

    async def deployment_full() -> bool:
        """`MAX_DEPLOYMENT_CALLS` reached (every worker's and replica's calls): the webhook
        answers busy at once; the stream's own admission is the exact check."""
        limit = settings.MAX_DEPLOYMENT_CALLS
        return limit is not None and await services.shared.live_calls() >= limit

    @app.api_route("/incoming-call", methods=["GET", "POST"])
    async def incoming_call(request: Request) -> Response:
        form = await _form(request)
        call_sid = clean_sid(form.get("CallSid"))  # logged, signed: the caller chose it
        if not signed(request, form):
            log.warning("call_rejected", call_sid=call_sid, reason="bad or missing signature")
            metrics.CALLS.labels(outcome="rejected_auth").inc()
            return PlainTextResponse("invalid signature", status_code=403)
        busy = None if calls.accepting else "draining" if calls.draining else "at capacity"
        if busy is None and await deployment_full():
            busy = "deployment at capacity"
        if busy is not None:
            log.warning("call_rejected", call_sid=call_sid, reason=busy)
            metrics.CALLS.labels(outcome="rejected_busy").inc()
            return _twiml(busy_twiml())
        caller, called = clean_number(form.get("From")), clean_number(form.get("To"))
        persona = book.for_number(called)
        log.info("webhook", call_sid=call_sid, persona=persona.name)
        return _twiml(stream_twiml(request, call_sid, persona, caller, called))

    def stream_twiml(
        request: Request, call_sid: str, persona: Persona, caller: str, called: str
    ) -> VoiceResponse:
        """`<Connect><Stream>` for a call: from the webhook, or back from a transfer."""
        host, scheme = request.headers.get("host"), request.url.scheme
        parameters = {
            "From": caller,
            "To": called,
            "persona": persona.name,
            "webhook_at": f"{time.time():.3f}",  # for the time-to-first-audio metric
        }
        if services.tokens is not None:
            parameters["token"] = services.tokens.mint(call_sid, persona.name, caller, called)
        return connect_twiml(
            settings.stream_url(host, scheme),
            parameters,
            action_url=settings.callback_url(STREAM_ENDED_PATH, host, scheme),
            status_url=settings.callback_url(STREAM_STATUS_PATH, host, scheme),
        )

    def dial_twiml_for(request: Request, called: str) -> Callable[[Transfer], VoiceResponse]:
        host, scheme = request.headers.get("host"), request.url.scheme
        action_url = settings.callback_url(DIAL_ENDED_PATH, host, scheme)
        return lambda transfer: transfer_twiml(transfer, caller_id=called, action_url=action_url)

    @app.post(STREAM_ENDED_PATH)
    async def stream_ended(request: Request) -> Response:
        """`<Connect action>`: the stream has ended; what the call does now."""
        form = await _form(request)
        call_sid = clean_sid(form.get("CallSid"))
        if not signed(request, form):
            log.warning(
                "stream_ended_rejected", call_sid=call_sid, reason="bad or missing signature"
            )
            return PlainTextResponse("invalid signature", status_code=403)
        outcome = await services.outcomes.take(call_sid)
        persona = book.for_number(clean_number(form.get("To")))
        log.info(
            "stream_ended",
            call_sid=call_sid,
            then=type(outcome).__name__.lower() if outcome is not None else "unknown_call",
        )
        fallback = persona.fallback_plan(caller_number=clean_number(form.get("From")))
        dial = dial_twiml_for(request, clean_number(form.get("To")))
        return _twiml(after_stream_twiml(outcome, fallback, dial))

    @app.post(DIAL_ENDED_PATH)
    async def dial_ended(request: Request) -> Response:
        """`<Dial action>`: a transfer's dial is over. Answered, the call is done; not
        answered (busy, failed), the caller comes back to the agent on a new stream, and the
        agent is told (`TransferNotAnswered`)."""
        form = await _form(request)
        call_sid = clean_sid(form.get("CallSid"))
        if not signed(request, form):
            log.warning("dial_ended_rejected", call_sid=call_sid, reason="bad or missing signature")
            return PlainTextResponse("invalid signature", status_code=403)
        status = clean_text(form.get("DialCallStatus"), 32)
        target = clean_text(request.query_params.get("target"), 64)
        if status in ("completed", "answered"):
            log.info("dial_ended", call_sid=call_sid, status=status, then="hangup")
            return _twiml(hangup_twiml())
        caller, called = clean_number(form.get("From")), clean_number(form.get("To"))
        persona = book.for_number(called)
        if not calls.accepting:
            log.info("dial_ended", call_sid=call_sid, status=status, then="fallback")
            return _twiml(fallback_twiml(persona.fallback_plan(caller_number=caller)))
        await services.resumes.record(call_sid, TransferNotAnswered(target or "the person", status))
        log.info("dial_ended", call_sid=call_sid, status=status, then="back_to_agent")
        return _twiml(stream_twiml(request, call_sid, persona, caller, called))

    @app.post(STREAM_STATUS_PATH)
    async def stream_status(request: Request) -> Response:
        form = await _form(request)
        if not signed(request, form):
            log.warning("stream_status_rejected", reason="bad or missing signature")
            return PlainTextResponse("invalid signature", status_code=403)
        status = clean_text(form.get("StreamEvent"), 32)
        (log.warning if status == "stream-error" else log.info)(
            "stream_status",
            call_sid=clean_sid(form.get("CallSid")),
            stream_sid=clean_sid(form.get("StreamSid")),
            status=status,
            error=clean_text(form.get("StreamError"), 512) or None,
        )
        return Response(status_code=204)

    @app.post(RECORDING_STATUS_PATH)
    async def recording_status(request: Request) -> Response:
        form = await _form(request)
        if not signed(request, form):
            log.warning("recording_status_rejected", reason="bad or missing signature")
            return PlainTextResponse("invalid signature", status_code=403)
        report_twilio_recording(services, form, request.query_params.get("persona", ""))
        return Response(status_code=204)

    # Outbound calls: `POST /calls` and Twilio's callbacks about them (bridge/outbound_routes.py).
    outbound = OutboundDesk.build(settings, services.dialled)
    app.state.outbound = outbound
    app.include_router(outbound_router(services, calls, outbound, signed, _form, stream_twiml))

    @app.get("/metrics")
    async def metrics_route() -> Response:
        body, content_type = await metrics.render_off_loop()
        return Response(content=body, media_type=content_type)

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz")
    async def readyz() -> PlainTextResponse:
        if calls.draining:
            return PlainTextResponse("draining", status_code=503)
        if not calls.accepting:
            return PlainTextResponse("at capacity", status_code=503)
        return PlainTextResponse("ready")

    return app
