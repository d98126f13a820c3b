"""A media stream, from the handshake to the call: who may stream, and the call it becomes.

The handshake's signature (signed mode), the `start` message within `START_TIMEOUT_S`, the
stream token (signed mode: the persona and the numbers come from it), a place among the live
calls (`CallRegistry.admit`: the cap, one stream per CallSid; then the same across the
deployment, `SharedStore.join`, with `MAX_DEPLOYMENT_CALLS`), then the call: its persona's
session, tools, limits and keypad, its upstream session, and the adapter that runs it
(`bridge.stream.CallRuntime`) until it ends.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from bridge import metrics
from bridge import twilio_stream as tw
from bridge.audio import make_pipeline
from bridge.call import Call, CallRules
from bridge.call.detection import DETECTION_WAIT_S, Detection
from bridge.call_report import CallReport
from bridge.caller_text import clean_number
from bridge.calls import CallRegistry
from bridge.errors import describe
from bridge.logs import get_logger
from bridge.outbound import with_context
from bridge.persona import Persona
from bridge.realtime.dialect import Dialect
from bridge.realtime.events import SessionConfig
from bridge.realtime.upstream import connect
from bridge.security import TokenError
from bridge.services import Services
from bridge.settings import Settings
from bridge.stream import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UPSTREAM_FAILED,
    CallRuntime,
    LogOnly,
    finish,
)
from bridge.tools import dtmf as keypad
from bridge.tools.base import ToolEnv
from bridge.tools.catalogue import build_tools
from bridge.tools.runner import ToolRunner
from bridge.ws import TwilioSocket

log = get_logger("voicebridge.stream")

START_TIMEOUT_S = 3.0
"""Twilio sends `start` right after `connected`; a stream silent for this long is not Twilio."""
SESSION_RENEW_MARGIN_S = 5 * 60.0
"""A call moves to a fresh session this long before the provider's cap (Azure 30 minutes,
OpenAI 60: `Settings.session_limit_s`), at a quiet moment."""


class StreamClosed(Exception):
    """The stream ended before `start` arrived."""


async def _await_start(ws: TwilioSocket) -> tw.Start:
    """Read until `start`. `connected` comes first; anything else before `start` is a breach."""
    while True:
        try:
            text = await ws.receive()
        except ValueError as exc:
            raise tw.StreamProtocolError(f"{exc} before start") from exc
        if text is None:
            raise StreamClosed("socket closed before start")
        event = tw.parse(text)
        if isinstance(event, tw.Start):
            return event
        if isinstance(event, tw.Connected):
            continue
        raise tw.StreamProtocolError(f"{type(event).__name__.lower()} before start")


async def handle_media_stream(ws: TwilioSocket, services: Services, calls: CallRegistry) -> None:
    """Serve one Twilio Media Stream from the handshake to the last log line."""
    if services.signatures is not None and not services.signatures.stream_valid(
        ws.header("x-twilio-signature")
    ):
        log.warning("stream_rejected", reason="bad or missing handshake signature")
        metrics.CALLS.labels(outcome="rejected_auth").inc()
        await ws.close(CLOSE_POLICY_VIOLATION, "invalid signature")
        return
    if not calls.await_start():
        log.warning("stream_rejected", reason="too many streams waiting for start")
        await ws.close(CLOSE_TRY_AGAIN_LATER, "busy")
        return
    try:
        start = await asyncio.wait_for(_await_start(ws), START_TIMEOUT_S)
    except StreamClosed:
        return
    except TimeoutError:
        log.warning("stream_rejected", reason="no start message within timeout")
        await ws.close(CLOSE_POLICY_VIOLATION, "no start")
        return
    except tw.StreamProtocolError as exc:
        log.warning("stream_rejected", reason=str(exc))
        await ws.close(CLOSE_POLICY_VIOLATION, "protocol error")
        return
    finally:
        calls.started()
    if not ws.open:
        return

    structlog.contextvars.bind_contextvars(call_sid=start.call_sid, stream_sid=start.stream_sid)
    try:
        params = start.custom_parameters
        persona_name = params.get("persona")
        # Unsigned (local mode), the parameters are all there is, cleaned; signed, the
        # numbers come from the token, which the webhook minted from Twilio's request.
        caller, called = clean_number(params.get("From")), clean_number(params.get("To"))
        if services.tokens is not None:
            try:
                claims = services.tokens.verify(
                    start.custom_parameters.get("token"), start.call_sid
                )
            except TokenError as exc:
                log.warning("stream_rejected", reason=str(exc))
                metrics.CALLS.labels(outcome="rejected_auth").inc()
                await ws.close(CLOSE_POLICY_VIOLATION, "invalid stream token")
                return
            # Once in the whole deployment: a replay to another worker or replica is refused.
            if not await services.shared.claim(
                f"token:{claims.nonce}", services.tokens.seconds_left(claims)
            ):
                log.warning("stream_rejected", reason="stream token already used")
                metrics.CALLS.labels(outcome="rejected_auth").inc()
                await ws.close(CLOSE_POLICY_VIOLATION, "invalid stream token")
                return
            persona_name, caller, called = claims.persona, claims.caller, claims.called
        refusal = calls.admit(start.call_sid)
        if refusal is None:
            # One stream per CallSid and the deployment's cap, across workers and replicas.
            joined = False
            try:
                refusal = await services.shared.join(
                    start.call_sid, services.settings.MAX_DEPLOYMENT_CALLS
                )
                joined = refusal is None
            finally:
                if not joined:  # refused, or cancelled while asking
                    calls.release(start.call_sid)
        if refusal is not None:
            log.warning("stream_rejected", reason=refusal)
            metrics.CALLS.labels(outcome="rejected_busy").inc()
            duplicate = refusal.startswith("a stream")
            code = CLOSE_POLICY_VIOLATION if duplicate else CLOSE_TRY_AGAIN_LATER
            await ws.close(code, refusal)
            return
        try:
            await _run_call(ws, services, calls, start, persona_name, caller, called)
        finally:
            calls.release(start.call_sid)
            await services.shared.leave(start.call_sid)
    finally:
        structlog.contextvars.unbind_contextvars("call_sid", "stream_sid")


def session_for(session: SessionConfig, settings: Settings) -> SessionConfig:
    """What the provider takes: on Azure the transcription `model` is a deployment name
    (`AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT`); without one, no input transcription is asked
    for (a model name would be refused there)."""
    if settings.provider != "azure":
        return session
    return replace(session, transcription_model=settings.AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT)


def call_rules(persona: Persona, services: Services, caller: str) -> CallRules:
    """The limits and lines of one call, from the settings and its persona."""
    settings, limits = services.settings, persona.limits
    reprompt = limits.idle_reprompt
    return CallRules(
        max_call_s=limits.max_call_seconds or settings.MAX_CALL_SECONDS,
        idle_s=limits.idle_seconds or settings.IDLE_TIMEOUT_SECONDS,
        goodbye=persona.render(limits.goodbye, caller_number=caller),
        idle_reprompt=persona.render(reprompt, caller_number=caller) if reprompt else None,
        session_renew_s=settings.session_limit_s - SESSION_RENEW_MARGIN_S,
        server_idle=persona.turn_detection.idle_timeout_ms is not None and settings.dialect == "ga",
    )


async def _run_call(
    ws: TwilioSocket,
    services: Services,
    calls: CallRegistry,
    start: tw.Start,
    persona_name: str | None,
    caller: str,
    called: str,
) -> None:
    params = start.custom_parameters
    persona = services.persona_for(persona_name)
    settings = services.settings
    audio_mode = settings.REALTIME_AUDIO
    stream_opened_at = time.time()
    at = datetime.now(UTC)
    catalogue = services.tools
    tools = (
        catalogue.tools_for(persona) if catalogue is not None else build_tools(persona, settings)
    )
    resume = await services.resumes.take(start.call_sid)  # back from a transfer nobody answered
    dialled = await services.dialled.take(start.call_sid)  # placed here (POST /calls)
    env = ToolEnv(persona, settings, start.call_sid, caller, called)

    def on_key(digit: str) -> keypad.DtmfOutcome | None:
        return keypad.decide(persona, digit, env)

    started_at = time.monotonic()
    report = CallReport.for_call(
        services,
        persona,
        call_sid=start.call_sid,
        caller=caller,
        called=called,
        at=at,
        started_at=started_at,
    )
    session = session_for(
        persona.session_config(
            audio_mode,
            caller_number=caller,
            at=at,
            tools=tools.function_tools,
            outbound=dialled is not None,
        ),
        settings,
    )
    greeting, detection = persona.greeting_for(at, caller), None
    if dialled is not None:  # the persona's outbound opening, after who answered is known
        session = replace(session, instructions=with_context(session.instructions, dialled.context))
        greeting = persona.outbound_greeting_for(at, caller)
        detection = Detection(
            persona.voicemail_for(at, caller), time.monotonic() + DETECTION_WAIT_S
        )
    call = Call(
        stream_sid=start.stream_sid,
        call_sid=start.call_sid,
        dialect=Dialect(settings.dialect),
        audio=make_pipeline(audio_mode),
        session=session,
        greeting=greeting,
        opening=resume.opening() if resume is not None else None,
        started_at=started_at,
        rules=call_rules(persona, services, caller),
        keypad=on_key,
        detection=detection,
        recorder=report.recorder,
    )
    early = await services.answered_by.take(start.call_sid) if dialled is not None else None
    if early is not None:  # `/amd-status` came before the stream started
        call.answered_by(early, time.monotonic())
    started = {
        "from": caller,
        "to": called,
        "persona": persona.name,
        "provider": settings.provider,
        "audio": audio_mode,
    }
    log.info("call_started", **started)
    if resume is not None:
        log.info("call_resumed", target=resume.target, dial_status=resume.status)
    if services.watchers is not None:
        line = {"event": "call_started", **started, "call_sid": start.call_sid}
        services.watchers.publish(start.call_sid, line)
    report.started()
    target = services.upstream.target()
    try:
        upstream = await connect(target)
    except Exception as exc:  # any failure to open: DNS, TLS, 401, timeout
        log.error("upstream_connect_failed", url=target.safe_url, error=describe(exc))
        finish(call, LogOnly(services), "upstream_failed")
        await services.outcomes.record(call.call_sid, call.after_stream)
        await report.ended(call)
        # Closing the stream lets Twilio continue with the TwiML after </Connect>:
        # the fallback apology, so the caller is never left in silence.
        await ws.close(CLOSE_UPSTREAM_FAILED, "upstream unavailable")
        return
    runtime = CallRuntime(
        call=call,
        twilio=ws,
        upstream=upstream,
        services=services,
        tools=ToolRunner(tools, env),
        webhook_at=_float_or_none(params.get("webhook_at")) or stream_opened_at,
        report=report,
        called=called,
    )
    calls.runtimes.add(runtime)
    try:
        await runtime.serve()
    finally:
        calls.runtimes.discard(runtime)


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
