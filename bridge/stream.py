"""The media-stream adapter: one Twilio socket, one upstream socket, one `Call` between them.

It only does I/O and decides nothing: the call core (`bridge.call`) holds every rule. Both
sockets deliver messages as callbacks (`bridge/ws.py`); each message is fed to the `Call`
with the time, and the call's outbox is drained to the sockets before the callback returns
(`Call.drain`, with this adapter as the `Sink`). The sockets write at the end of the event
loop's pass (`bridge.ws.LoopWrites`), a batch holding a barge-in's `clear` at once. Nothing
awaits on the hot path, so messages leave in exactly the order the `Call` decided, from
whichever side caused them. Tasks exist only beside it, for what must be awaited: the call's
own coroutine (set-up, waiting for the end, teardown), the ticks of the call's timers, a
reconnect, tools, call control over Twilio REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from datetime import UTC, datetime
from typing import Any

import structlog

from bridge import metrics
from bridge import twilio_stream as tw
from bridge.audio import make_pipeline
from bridge.call import (
    Attempt,
    BargeIn,
    Call,
    CallRules,
    CallStats,
    CarryOut,
    Effect,
    End,
    GiveUp,
    Log,
    Measure,
    Pause,
    Reconnect,
    RenewSession,
    RunTool,
    TranscriptLine,
)
from bridge.call_report import CallReport
from bridge.caller_text import clean_number
from bridge.calls import CallRegistry
from bridge.errors import describe
from bridge.logs import get_logger
from bridge.persona import Persona
from bridge.realtime.dialect import Dialect, UpstreamProtocolError
from bridge.realtime.events import FunctionCall
from bridge.realtime.upstream import connect
from bridge.security import TokenError
from bridge.services import Services
from bridge.tasks import TaskSet
from bridge.tools import dtmf as keypad
from bridge.tools.call_control import dial_twiml
from bridge.tools.registry import Handoff, ToolEnv, build_tools
from bridge.tools.runner import ToolRunner, parse_arguments
from bridge.ws import TwilioSocket, UpstreamSocket

log = get_logger("voicebridge.stream")

START_TIMEOUT_S = 10.0
CLOSE_POLICY_VIOLATION = 1008
CLOSE_NORMAL = 1000
CLOSE_UPSTREAM_FAILED = 1011
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013
LIMITS_TICK_S = 0.5  # how often the call's timers are looked at, and metrics synced
# Providers cap a session's length (OpenAI: 60 minutes); see `CallRules.session_renew_s`.
SESSION_RENEW_S = 55 * 60.0
# What a page watching a call live (the softphone) is sent, besides `call_started`, the
# transcript and `barge_in`: the call's actions and its end, as they are logged.
WATCHED_EVENTS = frozenset(
    {
        "call_ended",
        "tool_call",
        "dtmf",
        "handoff_started",
        "handoff_cancelled",
        "call_control",
        "call_limit",
        "upstream_lost",
        "upstream_reconnected",
    }
)
# Outcomes of carrying out call control are logged by the core; the REST request itself is
# bounded by the client's timeout, and teardown waits this much more for it to finish.
ACTING_GRACE_S = 1.0


class StreamClosed(Exception):
    """The stream ended before `start` arrived."""


class CallRuntime:
    """One live call: its sockets, the hot path between them, and the tasks beside it. It is
    the `Sink` the call core drains into."""

    def __init__(
        self,
        *,
        call: Call,
        twilio: TwilioSocket,
        upstream: UpstreamSocket,
        services: Services,
        tools: ToolRunner,
        webhook_at: float | None,
        report: CallReport | None = None,
    ) -> None:
        self.call = call
        self.report = report  # the call's events and record for the business
        self.twilio = twilio
        self.upstream = upstream
        self.services = services
        self.tools = tools
        self.webhook_at = webhook_at  # wall clock of the webhook, for time to first audio
        self.tasks = TaskSet(on_error=self._task_failed)
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.ended = asyncio.Event()
        self.reported = CallStats()  # what the metrics already have
        # The call's contextvars (its call_sid for the logs): the message callbacks run in
        # the loop's context; whatever logs or starts tasks runs in the call's. Entering it
        # costs too much to do for every frame.
        self.context = contextvars.copy_context()
        self._first_audio_seen = False
        self._fed_at = 0.0  # when the message being handled arrived
        self._clear_sent_at: float | None = None
        self._acting: asyncio.Task[Any] | None = None
        self._closed = False  # torn down: nothing more is written

    def end(self, reason: str) -> None:
        """End the call from outside (shutdown): the core keeps the first reason given."""
        self.call.end(reason)
        self.drain()

    # The hot path ------------------------------------------------------------------------------

    def on_twilio_text(self, text: str) -> None:
        now = self._fed_at = time.monotonic()
        call = self.call
        try:
            call.on_twilio(tw.parse(text), now)
        except (tw.StreamProtocolError, ValueError) as exc:
            call.twilio_rejected(str(exc))
        try:
            call.drain(self)
        except Exception as exc:
            self._failed(exc)

    def on_upstream_text(self, text: str) -> None:
        now = self._fed_at = time.monotonic()
        call = self.call
        try:
            call.on_upstream(self.call.dialect.decode(text), now)
        except UpstreamProtocolError as exc:
            call.upstream_rejected(str(exc))
        except Exception as exc:
            self._failed(exc)
            return
        try:
            call.drain(self)
        except Exception as exc:
            self._failed(exc)

    def drain(self) -> None:
        """Drain the call's outbox after something other than a socket message fed it."""
        self._fed_at = time.monotonic()
        self.call.drain(self)

    # The Sink: writes, no decisions --------------------------------------------------------------

    def send_twilio(self, messages: list[str], urgent: bool) -> None:
        if self._closed:
            return
        self.twilio.send_batch(messages, at_once=urgent)
        if urgent:
            self._clear_sent_at = time.monotonic()
        if not self._first_audio_seen and self.call.stats.frames_out:
            self._first_audio_seen = True
            if self.webhook_at is not None:
                metrics.TIME_TO_FIRST_AUDIO.observe(max(0.0, time.time() - self.webhook_at))

    def twilio_backlog(self) -> int:
        return self.twilio.write_buffer_size()

    def upstream_backlog(self) -> int:
        return self.upstream.write_buffer_size()

    def send_upstream(self, messages: list[str]) -> None:
        if self._closed:
            return
        send = self.upstream.send
        for message in messages:
            send(message)

    def apply(self, effects: list[Effect]) -> None:
        self.context.run(self._apply, effects)

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Log):
                getattr(log, effect.level)(effect.event, **effect.fields)
                if effect.event == "upstream_error":
                    metrics.UPSTREAM_ERRORS.labels(code=str(effect.fields.get("code"))).inc()
                if effect.event == "upstream_lost":
                    metrics.UPSTREAM_ERRORS.labels(code="connection_lost").inc()
                if effect.event in WATCHED_EVENTS:
                    self._publish({"event": effect.event, **effect.fields})
                if effect.event == "tool_call" and self.report is not None:
                    self.report.tool_call(effect.fields)
            elif isinstance(effect, TranscriptLine):
                log.info("transcript", **effect.fields)
                self._publish({"event": "transcript", **effect.fields})
                if self.report is not None:
                    self.report.transcript_line(effect.fields)
            elif isinstance(effect, Measure):
                if effect.name == "turn_latency":
                    metrics.TURN_LATENCY.observe(effect.value)
            elif isinstance(effect, BargeIn):
                reaction_ms = None
                if self._clear_sent_at is not None:
                    reaction_ms = round((self._clear_sent_at - self._fed_at) * 1000.0, 3)
                fields = {
                    "item_id": effect.item_id,
                    "played_ms": effect.played_ms,
                    "reaction_ms": reaction_ms,
                }
                log.info("barge_in", **fields)
                self._publish({"event": "barge_in", **fields})
                metrics.BARGE_INS.inc()
            elif self._closed:
                continue  # torn down: only what is logged still matters
            elif isinstance(effect, RunTool):
                self.tasks.spawn(self._run_tool(effect.call), f"tool:{effect.call.name}")
            elif isinstance(effect, CarryOut):
                self._acting = self.tasks.spawn(self._carry_out(effect.handoff), "handoff")
            elif isinstance(effect, RenewSession):
                self.tasks.spawn(self.upstream.close(), "renew-session")
            elif isinstance(effect, Reconnect):
                self.tasks.spawn(self._reconnect(), "reconnect")
            elif isinstance(effect, End):
                if not self.done.done():
                    self.done.set_result(effect.reason)

    def _publish(self, line: dict[str, Any]) -> None:
        watchers = self.services.watchers
        if watchers is not None:
            watchers.publish(self.call.call_sid, {**line, "call_sid": self.call.call_sid})

    # Sockets ------------------------------------------------------------------------------------

    # Callbacks run in the loop's context: what they log or start goes through `apply`,
    # which enters the call's.

    def attach_upstream(self, upstream: UpstreamSocket) -> None:
        self.upstream = upstream
        upstream.attach(
            self.on_upstream_text,
            self._upstream_rejected,
            lambda: self._upstream_closed_by(upstream),
        )

    def attach_twilio(self) -> None:
        self.twilio.attach(self.on_twilio_text, self._twilio_rejected, self._twilio_closed)

    def _twilio_rejected(self, reason: str) -> None:
        self.call.twilio_rejected(reason)
        self.drain()

    def _twilio_closed(self) -> None:
        self.call.twilio_closed(too_big=self.twilio.close_code == CLOSE_MESSAGE_TOO_BIG)
        self.drain()

    def _upstream_rejected(self, reason: str) -> None:
        self.call.upstream_rejected(reason)
        self.drain()

    def _upstream_closed_by(self, upstream: UpstreamSocket) -> None:
        if upstream is self.upstream and not self._closed:
            self.call.upstream_lost(time.monotonic())
            self.drain()

    def _failed(self, exc: BaseException) -> None:
        self.call.failed(describe(exc))
        self.drain()

    def _task_failed(self, name: str, exc: BaseException) -> None:
        self.context.run(log.error, "call_task_failed", task=name, error=describe(exc))

    # What must be awaited ---------------------------------------------------------------------

    async def ticks(self) -> None:
        """The call's timers: limits, idleness, renewal, the handoff's watchdog."""
        while True:
            await asyncio.sleep(LIMITS_TICK_S)
            self.sync_metrics()  # the frame counters, off the hot path
            self.call.tick(time.monotonic())
            self.drain()

    async def _run_tool(self, function_call: FunctionCall) -> None:
        started = time.perf_counter()
        args, problem = parse_arguments(function_call.arguments)

        def slow(filler: str) -> None:
            self.call.tool_slow(function_call, filler, time.monotonic())
            self.drain()

        try:
            result = await self.tools.run(function_call.name, args, problem, slow)
        except asyncio.CancelledError:
            self.call.tool_cancelled(function_call, args, _ms_since(started))
            raise
        self.call.tool_finished(function_call, args, result, _ms_since(started), time.monotonic())
        self.drain()
        if self.report is not None:  # its `tool_call` line was just applied
            self.report.tool_result(function_call.name, result.output)

    async def _carry_out(self, handoff: Handoff) -> None:
        control = self.services.control
        outcome = None
        if control is not None:
            call_sid = self.call.call_sid
            if handoff.kind == "transfer":
                assert handoff.number is not None
                outcome = await control.redirect(call_sid, dial_twiml(handoff.number))
            else:
                outcome = await control.complete(call_sid)
        self.call.handoff_result(outcome, time.monotonic())
        self.drain()

    async def _reconnect(self) -> None:
        """Open a new upstream session, as the call core says; caller audio waits meanwhile
        in the call's backlog, and what the caller already has keeps playing."""
        call = self.call
        target = self.services.upstream.target()
        while True:
            step = call.reconnect_step(time.monotonic())
            if isinstance(step, GiveUp):
                self.drain()
                return
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                continue
            assert isinstance(step, Attempt)
            try:
                upstream = await asyncio.wait_for(connect(target), step.timeout_s)
            except Exception as exc:  # refused, timed out, rejected: the core says what next
                call.reconnect_failed(describe(exc))
                self.drain()
                continue
            old = self.upstream
            old.detach()
            self.attach_upstream(upstream)
            call.upstream_reopened(time.monotonic())
            self.drain()
            if not upstream.open:
                self._upstream_closed_by(upstream)
            with contextlib.suppress(Exception):
                await old.close()
            return

    async def serve(self) -> None:
        """Start the hot path, wait for the end, tear down."""
        call = self.call
        call.upstream_opened(time.monotonic())
        self.attach_upstream(self.upstream)
        self.drain()
        self.attach_twilio()  # the messages that arrived meanwhile are fed first
        self.tasks.spawn(self.ticks(), f"ticks:{call.call_sid}")
        try:
            await self.done
        except asyncio.CancelledError:
            call.end("shutdown")
            raise
        finally:
            await self._teardown()

    async def _teardown(self) -> None:
        call = self.call
        self.twilio.detach()
        self.upstream.detach()
        acting = self._acting
        if acting is not None and not acting.done():
            # A Twilio request already sent is let finish (bounded by its timeout), so its
            # outcome is logged and the call's end reason stays true.
            control = self.services.control
            limit = (control.timeout_s if control is not None else 0.0) + ACTING_GRACE_S
            await asyncio.wait({acting}, timeout=limit)
        self._closed = True
        await self.tasks.cancel_all()
        await self.tools.aclose()
        with contextlib.suppress(Exception):
            await self.upstream.close()
        reason = call.end_reason or "error"
        close_code = {
            "protocol_error": CLOSE_POLICY_VIOLATION,
            # Twilio continues with the persona's fallback TwiML after </Connect>.
            "upstream_failed": CLOSE_UPSTREAM_FAILED,
        }.get(reason, CLOSE_NORMAL)
        if self.twilio.open:
            with contextlib.suppress(Exception):
                await self.twilio.close(close_code)
        self.sync_metrics()
        finish(call, self)
        if self.report is not None:
            await self.report.ended(call)
        self.ended.set()

    def sync_metrics(self) -> None:
        """Move the frame counters by what changed since the last sync."""
        stats, done = self.call.stats, self.reported
        for name, metric in _FRAME_COUNTERS:
            value = getattr(stats, name)
            change = value - getattr(done, name)
            if change:
                metric.inc(change)
                setattr(done, name, value)
        _UPSTREAM_SEND_KIB.observe(self.upstream.write_buffer_size() / 1024)


_FRAME_COUNTERS = (
    ("frames_in", metrics.FRAMES_IN),
    ("frames_out", metrics.FRAMES_OUT),
    (
        "backlog_dropped",
        metrics.FRAMES_DROPPED.labels(direction="inbound", reason="upstream_not_ready"),
    ),
    ("slow_dropped", metrics.FRAMES_DROPPED.labels(direction="inbound", reason="upstream_slow")),
    ("deltas_dropped", metrics.FRAMES_DROPPED.labels(direction="outbound", reason="barge_in")),
)
_UPSTREAM_SEND_KIB = metrics.QUEUE_DEPTH.labels(queue="upstream_send_kib")

# Why a call ended → the `outcome` label of voicebridge_calls_total.
_OUTCOMES = {
    "caller_hangup": "caller_hangup",
    "agent_hangup": "agent_hangup",
    "transferred": "transferred",
    "upstream_failed": "upstream_failed",
    "timeout": "timeout",
    "max_duration": "timeout",
    "idle": "timeout",
    "protocol_error": "error",
    "error": "error",
}


class _LogOnly:
    """The sink of a call that never got sockets (the upstream could not be opened)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def send_twilio(self, messages: list[str], urgent: bool) -> None:
        pass

    def twilio_backlog(self) -> int:
        return 0

    def upstream_backlog(self) -> int:
        return 0

    def send_upstream(self, messages: list[str]) -> None:
        pass

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Log):
                getattr(log, effect.level)(effect.event, **effect.fields)
            elif isinstance(effect, TranscriptLine):
                log.info("transcript", **effect.fields)


def finish(call: Call, sink: CallRuntime | _LogOnly, reason: str | None = None) -> None:
    """The call's last lines and its metrics."""
    now = time.monotonic()
    call.finish(now, reason)
    metrics.CALLS.labels(outcome=_OUTCOMES.get(call.end_reason or "", "completed")).inc()
    metrics.CALL_DURATION.observe(now - call.started_at)
    call.drain(sink)


# The stream, from the handshake to the call ------------------------------------------------------


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
            persona_name, caller, called = claims.persona, claims.caller, claims.called
        refusal = calls.admit(start.call_sid)
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
    finally:
        structlog.contextvars.unbind_contextvars("call_sid", "stream_sid")


def call_rules(persona: Persona, services: Services, caller: str) -> CallRules:
    """The limits and lines of one call, from the settings and its persona."""
    settings, limits = services.settings, persona.limits
    reprompt = limits.idle_reprompt
    return CallRules(
        max_call_s=limits.max_call_seconds or settings.MAX_CALL_SECONDS,
        idle_s=limits.idle_seconds or settings.IDLE_TIMEOUT_SECONDS,
        goodbye=persona.render(limits.goodbye, caller_number=caller),
        idle_reprompt=persona.render(reprompt, caller_number=caller) if reprompt else None,
        session_renew_s=SESSION_RENEW_S,
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
    tools = build_tools(persona, settings)
    env = ToolEnv(persona, settings, start.call_sid, caller)
    can_transfer = services.control is not None

    def on_key(digit: str) -> keypad.DtmfOutcome | None:
        return keypad.decide(persona, digit, env, can_transfer=can_transfer)

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
    call = Call(
        stream_sid=start.stream_sid,
        call_sid=start.call_sid,
        dialect=Dialect(settings.dialect),
        audio=make_pipeline(audio_mode),
        session=persona.session_config(
            audio_mode,
            caller_number=caller,
            at=at,
            tools=tuple(tool.function_tool for tool in tools.values()),
        ),
        greeting=persona.greeting_for(at, caller),
        started_at=started_at,
        rules=call_rules(persona, services, caller),
        keypad=on_key,
        recorder=report.recorder,
    )
    started = {
        "from": caller,
        "to": called,
        "persona": persona.name,
        "provider": settings.provider,
        "audio": audio_mode,
    }
    log.info("call_started", **started)
    if services.watchers is not None:
        line = {"event": "call_started", **started, "call_sid": start.call_sid}
        services.watchers.publish(start.call_sid, line)
    report.started()
    target = services.upstream.target()
    try:
        upstream = await connect(target)
    except Exception as exc:  # any failure to open: DNS, TLS, 401, timeout
        log.error("upstream_connect_failed", url=target.safe_url, error=describe(exc))
        finish(call, _LogOnly(services), "upstream_failed")
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
    )
    calls.runtimes.add(runtime)
    try:
        await runtime.serve()
    finally:
        calls.runtimes.discard(runtime)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
