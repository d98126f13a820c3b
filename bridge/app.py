"""The HTTP and WebSocket surface (interface.md): webhook, media stream, health, metrics.

Routes are thin: they read the request, ask `Bridge` (the process-wide state: settings,
personas, live calls, draining) and hand the media stream to `stream.py`. The HTTP routes are
FastAPI; `/media-stream` is served on the same port by picows, to which uvicorn hands every
WebSocket upgrade (`server.uvicorn_config`, `ws.uvicorn_ws_protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from bridge import metrics
from bridge.edge import read_form
from bridge.engine.local import local_engine
from bridge.logs import get_logger
from bridge.loop_lag import watch_loop_lag
from bridge.persona import FallbackPlan, Persona, PersonaBook
from bridge.realtime.upstream import UpstreamTarget, upstream_target
from bridge.security import StreamTokens, TwilioSignatures
from bridge.settings import Settings
from bridge.softphone import softphone_enabled, softphone_router
from bridge.stream import CallRuntime, handle_media_stream
from bridge.tools import unavailable_tools, web_search
from bridge.ws import TwilioSocket

log = get_logger("voicebridge.app")

UNAVAILABLE_SAY = (
    "Sorry, our assistant is not available right now. Please call again later. Goodbye."
)
BUSY_SAY = (
    "Sorry, all of our lines are busy right now. Please call again in a few minutes. Goodbye."
)
MAX_FORM_BYTES = 64 * 1024


class Bridge:
    """Process-wide state shared by the routes."""

    def __init__(self, settings: Settings, personas: PersonaBook | Persona | None = None) -> None:
        self.settings = settings
        if isinstance(personas, Persona):
            personas = PersonaBook([personas])
        self.personas = personas or PersonaBook.builtin()
        self.active_calls = 0
        self.idle = asyncio.Event()  # set while no call is live (the drain waits on it)
        self.idle.set()
        self.draining = False
        self.runtimes: set[CallRuntime] = set()
        self.streams: set[asyncio.Task[None]] = set()  # one per media-stream connection
        self.local_engine_url: str | None = None
        self.signatures: TwilioSignatures | None = None
        self.tokens: StreamTokens | None = None
        if settings.TWILIO_AUTH_TOKEN is not None and settings.PUBLIC_URL is not None:
            secret = settings.TWILIO_AUTH_TOKEN.get_secret_value()
            self.signatures = TwilioSignatures(secret, settings.PUBLIC_URL)
            self.tokens = StreamTokens(secret)

    def persona_for(self, name: str | None) -> Persona:
        """The persona the webhook chose (by name, from the stream's parameters)."""
        persona = self.personas.get(name) if name else None
        if persona is None:
            if name:
                log.warning("persona_unknown", persona=name, using=self.personas.default.name)
            persona = self.personas.default
        return persona

    def upstream_target(self) -> UpstreamTarget:
        return upstream_target(self.settings, self.local_engine_url)

    @property
    def accepting(self) -> bool:
        return not self.draining and self.active_calls < self.settings.MAX_CONCURRENT_CALLS

    def serve_stream(self, ws: TwilioSocket) -> None:
        """A media-stream socket completed its handshake: serve it in its own task."""
        task = asyncio.create_task(handle_media_stream(ws, self), name="media-stream")
        self.streams.add(task)
        task.add_done_callback(self._stream_done)

    def _stream_done(self, task: asyncio.Task[None]) -> None:
        self.streams.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("stream_failed", error=repr(task.exception()))

    async def close_streams(self, timeout_s: float = 5.0) -> None:
        """Server shutdown: end the calls still live (after the drain), then their tasks."""
        for runtime in list(self.runtimes):
            runtime.end("shutdown")
        if self.streams:
            await asyncio.wait(set(self.streams), timeout=timeout_s)
        for task in list(self.streams):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self.streams, return_exceptions=True)

    def call_started(self) -> None:
        self.active_calls += 1
        self.idle.clear()
        metrics.ACTIVE_CALLS.set(self.active_calls)

    def call_ended(self) -> None:
        self.active_calls -= 1
        if self.active_calls == 0:
            self.idle.set()
        metrics.ACTIVE_CALLS.set(self.active_calls)


def _twiml(body: VoiceResponse) -> Response:
    return Response(content=str(body), media_type="text/xml")


def busy_twiml() -> VoiceResponse:
    response = VoiceResponse()
    response.say(BUSY_SAY)
    response.hangup()
    return response


def connect_twiml(
    stream_url: str, parameters: dict[str, str], fallback: FallbackPlan | None = None
) -> VoiceResponse:
    """`<Connect><Stream>` with the per-call `<Parameter>`s, then the persona's fallback for
    when the stream ends without the agent having ended the call (upstream down, bridge
    restarting): an apology, then a transfer to a human or a hang-up."""
    response = VoiceResponse()
    connect = Connect()
    stream = Stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    connect.append(stream)
    response.append(connect)
    response.say(fallback.say if fallback else UNAVAILABLE_SAY)
    if fallback and fallback.transfer_number:
        response.dial(fallback.transfer_number)
    else:
        response.hangup()
    return response


async def _form(request: Request) -> dict[str, str]:
    if request.method != "POST":
        return dict(request.query_params)
    # Read with the cap as it streams: past it, 413 and nothing more read (bridge.edge).
    return await read_form(request, MAX_FORM_BYTES)


def create_app(settings: Settings, personas: PersonaBook | Persona | None = None) -> FastAPI:
    """Build the ASGI app. `app.state.bridge` is the shared state."""
    bridge = Bridge(settings, personas)
    for entry in unavailable_tools(bridge.personas, settings):
        log.warning("tool_unavailable", **asdict(entry))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The built-in local Realtime engine, when it is the provider (issue 8).
        wanted = settings.provider == "local" and not settings.REALTIME_URL
        async with local_engine(wanted and bridge.local_engine_url is None) as engine:
            if engine is not None:
                bridge.local_engine_url = engine.url
            if settings.TAVILY_API_KEY is not None:
                await web_search.prepare()  # not on the event loop in the first search
            # Everything loaded so far (libraries, compiled kernels, personas) lives as long as
            # the process. Frozen, it is out of the collector's sight: a full collection during
            # calls then walks only what calls allocate: a full collection at 100 calls paused
            # the event loop for 148 ms before (an audible gap in every call of the process)
            # and 4.5 ms with the freeze (gc.callbacks under bench/load.py).
            gc.collect()
            gc.freeze()
            lag = asyncio.create_task(watch_loop_lag(), name="loop-lag")
            try:
                yield
            finally:
                lag.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lag
                await bridge.close_streams()

    app = FastAPI(
        title="voicebridge", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.bridge = bridge
    if softphone_enabled(settings):
        app.include_router(softphone_router())

    def signed(request: Request, form: dict[str, str]) -> bool:
        if bridge.signatures is None:
            return True
        params = form if request.method == "POST" else {}
        return bridge.signatures.webhook_valid(
            request.url.path,
            request.url.query,
            params,
            request.headers.get("x-twilio-signature"),
        )

    @app.api_route("/incoming-call", methods=["GET", "POST"])
    async def incoming_call(request: Request) -> Response:
        form = await _form(request)
        call_sid = form.get("CallSid", "")
        if not signed(request, form):
            log.warning("call_rejected", call_sid=call_sid, reason="bad or missing signature")
            metrics.CALLS.labels(outcome="rejected_auth").inc()
            return PlainTextResponse("invalid signature", status_code=403)
        if not bridge.accepting:
            log.warning(
                "call_rejected",
                call_sid=call_sid,
                reason="draining" if bridge.draining else "at capacity",
            )
            metrics.CALLS.labels(outcome="rejected_busy").inc()
            return _twiml(busy_twiml())
        caller, called = form.get("From", ""), form.get("To", "")
        persona = bridge.personas.for_number(called)
        stream_url = settings.stream_url(request.headers.get("host"), request.url.scheme)
        parameters = {
            "From": caller,
            "To": called,
            "persona": persona.name,
            "webhook_at": f"{time.time():.3f}",  # for the time-to-first-audio metric
        }
        if bridge.tokens is not None:
            parameters["token"] = bridge.tokens.mint(call_sid, persona.name)
        log.info("webhook", call_sid=call_sid, persona=persona.name, stream_url=stream_url)
        fallback = persona.fallback_plan(caller_number=caller)
        return _twiml(connect_twiml(stream_url, parameters, fallback))

    @app.post("/stream-status")
    async def stream_status(request: Request) -> Response:
        form = await _form(request)
        if not signed(request, form):
            log.warning("stream_status_rejected", reason="bad or missing signature")
            return PlainTextResponse("invalid signature", status_code=403)
        log.info(
            "stream_status",
            call_sid=form.get("CallSid", ""),
            stream_sid=form.get("StreamSid", ""),
            status=form.get("StreamEvent", ""),
            error=form.get("StreamError"),
        )
        return Response(status_code=204)

    @app.get("/metrics")
    async def metrics_route() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz")
    async def readyz() -> PlainTextResponse:
        if bridge.draining:
            return PlainTextResponse("draining", status_code=503)
        if not bridge.accepting:
            return PlainTextResponse("at capacity", status_code=503)
        return PlainTextResponse("ready")

    return app
