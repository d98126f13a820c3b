"""The media-stream adapter: one Twilio socket, one upstream socket, one `Call` between them.

Two pumps read the two sockets and feed the `Call`; after each event the outboxes are sent.
Only the upstream pump ever writes to the Twilio socket (every message to Twilio is caused
by an upstream event), so frames, marks and `clear` leave in exactly the order the `Call`
decided, and no frame can slip out behind a `clear`. The one exception, `_reconnect`, runs
only once that pump has ended. Writes to the upstream socket come from both pumps, the
limits timer and tool tasks; each takes the outbox whole before awaiting, so nothing is sent
twice or lost, and while a lost upstream is being replaced they wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bridge import metrics
from bridge import twilio_stream as tw
from bridge.audio import make_pipeline
from bridge.call import BargeIn, Call, CallStats, Dtmf, End, Log, Measure, PlaybackIdle, RunTool
from bridge.logs import get_logger
from bridge.realtime.dialect import Dialect, UpstreamProtocolError
from bridge.realtime.upstream import UPSTREAM_AUDIO_BACKLOG_BYTES, connect
from bridge.security import TokenError
from bridge.tools.registry import function_tools, speak_exactly
from bridge.tools.runner import ToolRunner

if TYPE_CHECKING:
    from bridge.app import Bridge
    from bridge.persona import Persona

log = get_logger("voicebridge.stream")

START_TIMEOUT_S = 10.0
# A peer that sends this many malformed messages is not Twilio; end its call.
MAX_PROTOCOL_ERRORS = 20
CLOSE_POLICY_VIOLATION = 1008
CLOSE_NORMAL = 1000
CLOSE_UPSTREAM_FAILED = 1011
CLOSE_MESSAGE_TOO_BIG = 1009
METRICS_EVERY_FRAMES = 50  # counters are synced about once a second, not per frame
LIMITS_TICK_S = 0.5  # how often call length and idleness are checked
IDLE_GOODBYE = "I haven't heard from you, so I'll end the call now. Goodbye."
# An upstream lost mid-call is replaced within this window, or the call falls back.
RECONNECT_WINDOW_S = 2.0
RECONNECT_PAUSE_S = 0.2  # between attempts inside the window
# Providers cap a session's length (OpenAI: 60 minutes); a call is moved to a fresh session,
# at a quiet moment, before that.
SESSION_RENEW_S = 55 * 60.0


class StreamClosed(Exception):
    """The stream ended before `start` arrived."""


@dataclass(frozen=True)
class ToolContext:
    """What tools may need about the call beyond the `Call` itself."""

    bridge: Bridge
    persona: Persona
    call_sid: str
    caller_number: str = ""


@dataclass(eq=False)
class CallRuntime:
    """The sockets and tasks of one live call, so shutdown can find and release them."""

    call: Call
    twilio: WebSocket
    upstream: ClientConnection
    dialect: Dialect
    tools: ToolRunner | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)  # the two pumps
    helpers: set[asyncio.Task[Any]] = field(default_factory=set)  # timers beside them
    persona: Persona | None = None
    max_call_s: float = 1800.0
    idle_s: float = 30.0
    session_started: float = field(default_factory=time.monotonic)
    upstream_ready: bool = True  # False while a lost upstream is being replaced
    renewing: bool = False
    end_reason: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    webhook_at: float | None = None  # wall clock of the webhook, for time to first audio
    first_audio_seen: bool = False
    reported: CallStats = field(default_factory=CallStats)  # what the metrics already have

    def end(self, reason: str) -> None:
        """End the call from outside the pumps (call control, limits, shutdown)."""
        self.end_reason = self.end_reason or reason
        for task in list(self.tasks):
            task.cancel()


async def _await_start(ws: WebSocket) -> tw.Start:
    """Read until `start`. `connected` comes first; anything else before `start` is a breach."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            raise StreamClosed("socket closed before start")
        text = message.get("text")
        if text is None:
            raise tw.StreamProtocolError("binary frame before start")
        event = tw.parse(text)
        if isinstance(event, tw.Start):
            return event
        if isinstance(event, tw.Connected):
            continue
        raise tw.StreamProtocolError(f"{type(event).__name__.lower()} before start")


async def _close_twilio(ws: WebSocket, code: int, reason: str = "") -> None:
    if (
        ws.client_state == WebSocketState.CONNECTED
        and ws.application_state == WebSocketState.CONNECTED
    ):
        with contextlib.suppress(Exception):
            await ws.close(code=code, reason=reason[:120])


async def handle_media_stream(ws: WebSocket, bridge: Bridge) -> None:
    """Serve one Twilio Media Stream from `accept` to the last log line."""
    await ws.accept()
    if bridge.signatures is not None and not bridge.signatures.stream_valid(
        ws.headers.get("x-twilio-signature")
    ):
        log.warning("stream_rejected", reason="bad or missing handshake signature")
        metrics.CALLS.labels(outcome="rejected_auth").inc()
        await _close_twilio(ws, CLOSE_POLICY_VIOLATION, "invalid signature")
        return
    try:
        start = await asyncio.wait_for(_await_start(ws), START_TIMEOUT_S)
    except (StreamClosed, WebSocketDisconnect):
        return
    except TimeoutError:
        log.warning("stream_rejected", reason="no start message within timeout")
        await _close_twilio(ws, CLOSE_POLICY_VIOLATION, "no start")
        return
    except tw.StreamProtocolError as exc:
        log.warning("stream_rejected", reason=str(exc))
        await _close_twilio(ws, CLOSE_POLICY_VIOLATION, "protocol error")
        return

    structlog.contextvars.bind_contextvars(call_sid=start.call_sid, stream_sid=start.stream_sid)
    persona_name = start.custom_parameters.get("persona")
    if bridge.tokens is not None:
        try:
            claims = bridge.tokens.verify(start.custom_parameters.get("token"), start.call_sid)
        except TokenError as exc:
            log.warning("stream_rejected", reason=str(exc))
            metrics.CALLS.labels(outcome="rejected_auth").inc()
            await _close_twilio(ws, CLOSE_POLICY_VIOLATION, "invalid stream token")
            structlog.contextvars.unbind_contextvars("call_sid", "stream_sid")
            return
        persona_name = claims.persona  # signed: trust it over the plain parameter
    try:
        await _run_call(ws, bridge, start, persona_name)
    finally:
        structlog.contextvars.unbind_contextvars("call_sid", "stream_sid")


async def _run_call(
    ws: WebSocket, bridge: Bridge, start: tw.Start, persona_name: str | None
) -> None:
    params = start.custom_parameters
    persona = bridge.persona_for(persona_name)
    settings = bridge.settings
    audio_mode = settings.REALTIME_AUDIO
    caller = params.get("From", "")
    stream_opened_at = time.time()
    at = datetime.now(UTC)
    call = Call(
        stream_sid=start.stream_sid,
        call_sid=start.call_sid,
        dialect=Dialect(settings.dialect),
        audio=make_pipeline(audio_mode),
        session=persona.session_config(
            audio_mode, caller_number=caller, at=at, tools=function_tools(persona, settings)
        ),
        greeting=persona.greeting_for(at, caller),
        started_at=time.monotonic(),
    )
    log.info(
        "call_started",
        **{"from": caller, "to": params.get("To", "")},
        persona=persona.name,
        provider=settings.provider,
        audio=audio_mode,
    )
    bridge.call_started()
    try:
        target = bridge.upstream_target()
        try:
            upstream = await connect(target)
        except Exception as exc:  # any failure to open: DNS, TLS, 401, timeout
            log.error("upstream_connect_failed", url=target.safe_url, error=_describe(exc))
            _finish(call, "upstream_failed")
            # Closing the stream lets Twilio continue with the TwiML after </Connect>:
            # the fallback apology, so the caller is never left in silence.
            await _close_twilio(ws, CLOSE_UPSTREAM_FAILED, "upstream unavailable")
            return
        runtime = CallRuntime(call=call, twilio=ws, upstream=upstream, dialect=call.dialect)
        runtime.webhook_at = _float_or_none(params.get("webhook_at")) or stream_opened_at
        runtime.persona = persona
        runtime.max_call_s = persona.limits.max_call_seconds or settings.MAX_CALL_SECONDS
        runtime.idle_s = persona.limits.idle_seconds or settings.IDLE_TIMEOUT_SECONDS
        runtime.tools = ToolRunner(
            call,
            flush=lambda: _send_upstream(runtime),
            end=runtime.end,
            context=ToolContext(
                bridge=bridge, persona=persona, call_sid=start.call_sid, caller_number=caller
            ),
        )
        bridge.runtimes.add(runtime)
        try:
            await _pump(runtime, bridge)
        finally:
            bridge.runtimes.discard(runtime)
    finally:
        bridge.call_ended()


async def _pump(rt: CallRuntime, bridge: Bridge) -> None:
    call = rt.call
    call.upstream_opened(time.monotonic())
    await _send_upstream(rt)
    twilio_task = asyncio.create_task(_twilio_pump(rt), name=f"twilio:{call.call_sid}")
    upstream_task = asyncio.create_task(
        _upstream_pump(rt, bridge), name=f"upstream:{call.call_sid}"
    )
    limits_task = asyncio.create_task(_enforce_limits(rt), name=f"limits:{call.call_sid}")
    rt.tasks.update((twilio_task, upstream_task))
    rt.helpers.add(limits_task)
    reason = "error"
    try:
        while True:
            done, _ = await asyncio.wait(rt.tasks, return_when=asyncio.FIRST_COMPLETED)
            first = twilio_task if twilio_task in done else done.pop()
            if first.cancelled():
                reason = rt.end_reason or "error"
            elif first.exception() is not None:
                log.error("call_failed", error=_describe(first.exception()))
                reason = "error"
            else:
                reason = first.result()
            if first is not upstream_task or reason != "upstream_closed" or rt.end_reason:
                break
            # The model's socket went away mid-call: replace it, or fall back.
            rt.tasks.discard(upstream_task)
            reconnect = asyncio.create_task(
                _reconnect(rt, bridge), name=f"reconnect:{call.call_sid}"
            )
            rt.helpers.add(reconnect)
            await asyncio.wait((reconnect, twilio_task), return_when=asyncio.FIRST_COMPLETED)
            if twilio_task.done():
                continue  # the caller left meanwhile; the loop reads why
            if not reconnect.result():
                reason = "upstream_failed"
                break
            upstream_task = asyncio.create_task(
                _upstream_pump(rt, bridge), name=f"upstream:{call.call_sid}"
            )
            rt.tasks.add(upstream_task)
    finally:
        for task in (*rt.tasks, *rt.helpers):
            task.cancel()
        await asyncio.gather(*rt.tasks, *rt.helpers, return_exceptions=True)
        rt.tasks.clear()
        rt.helpers.clear()
        if rt.tools is not None:
            await rt.tools.aclose()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(rt.upstream.close(), 1.0)
        final = rt.end_reason or reason
        close_code = {
            "protocol_error": CLOSE_POLICY_VIOLATION,
            # Twilio continues with the persona's fallback TwiML after </Connect>.
            "upstream_failed": CLOSE_UPSTREAM_FAILED,
        }.get(final, CLOSE_NORMAL)
        await _close_twilio(rt.twilio, close_code)
    _sync_metrics(rt)
    # A transfer or hang-up already requested from Twilio is why the call ended, even when
    # Twilio's `stop` beat the REST answer to the stream.
    _finish(call, (rt.tools and rt.tools.end_reason) or rt.end_reason or reason)
    rt.ended.set()


async def _reconnect(rt: CallRuntime, bridge: Bridge) -> bool:
    """Open a new upstream session within `RECONNECT_WINDOW_S` and bring it up to date.

    Caller audio meanwhile waits in the call's backlog; what the caller already has keeps
    playing. Returns False when no session could be opened in time.
    """
    call = rt.call
    lost_at = time.monotonic()
    renewing, rt.renewing = rt.renewing, False
    rt.upstream_ready = False
    call.upstream_lost(lost_at)
    if call.twilio_out:
        await _send_twilio(rt)
    if not renewing:
        log.warning("upstream_lost", active_calls=bridge.active_calls)
        metrics.UPSTREAM_ERRORS.labels(code="connection_lost").inc()
    target = bridge.upstream_target()
    attempt = 0
    while (remaining := lost_at + RECONNECT_WINDOW_S - time.monotonic()) > 0:
        attempt += 1
        try:
            upstream = await asyncio.wait_for(connect(target), remaining)
        except Exception as exc:  # refused, timed out, rejected: try again while time remains
            log.warning("upstream_reconnect_failed", attempt=attempt, error=_describe(exc))
            await asyncio.sleep(min(RECONNECT_PAUSE_S, max(0.0, remaining)))
            continue
        with contextlib.suppress(Exception):
            await asyncio.wait_for(rt.upstream.close(), 0.5)
        rt.upstream = upstream
        rt.session_started = time.monotonic()
        call.upstream_reopened(rt.session_started)
        rt.upstream_ready = True
        await _send_upstream(rt)
        log.info(
            "upstream_reconnected",
            attempt=attempt,
            renewal=renewing,
            gap_ms=round((time.monotonic() - lost_at) * 1000.0, 1),
            replayed_items=len(call.history),
        )
        return True
    log.error("upstream_reconnect_gave_up", attempts=attempt, window_s=RECONNECT_WINDOW_S)
    return False


async def _enforce_limits(rt: CallRuntime) -> None:
    """Call length and idleness, checked every half second beside the pumps.

    At the length limit the persona's goodbye is spoken, then the call is hung up. When
    neither side has done anything for the idle time, the persona's reprompt is spoken once;
    if the caller still says nothing for another idle period, a short goodbye and hang-up.
    """
    call, persona = rt.call, rt.persona
    if rt.tools is None or persona is None:
        return
    reprompted_at: float | None = None
    caller = rt.tools.context.caller_number if rt.tools.context is not None else ""
    while True:
        await asyncio.sleep(LIMITS_TICK_S)
        now = time.monotonic()
        if now - call.started_at >= rt.max_call_s:
            log.info("call_limit", limit="max_call_seconds", seconds=rt.max_call_s)
            rt.tools.end_with(
                persona.render(persona.limits.goodbye, caller_number=caller), "max_duration"
            )
            return
        if now - rt.session_started >= SESSION_RENEW_S and call.idle and rt.upstream_ready:
            # Move to a fresh session while nobody is speaking; the pump's reconnect does it.
            log.info("session_renewal", session_age_s=round(now - rt.session_started))
            rt.renewing = True
            await rt.upstream.close()
            continue
        if reprompted_at is not None and (call.last_caller_speech or 0) > reprompted_at:
            reprompted_at = None  # the caller answered the reprompt
        if not call.idle or now - call.last_activity < rt.idle_s:
            continue
        if reprompted_at is None and persona.limits.idle_reprompt:
            log.info("call_limit", limit="idle_reprompt", seconds=rt.idle_s)
            reprompt = persona.render(persona.limits.idle_reprompt, caller_number=caller)
            if call.say(speak_exactly(reprompt)):
                reprompted_at = now
                call.last_activity = now
                await _send_upstream(rt)
            continue
        log.info("call_limit", limit="idle_seconds", seconds=rt.idle_s)
        rt.tools.end_with(IDLE_GOODBYE, "idle")
        return


async def _twilio_pump(rt: CallRuntime) -> str:
    call, ws = rt.call, rt.twilio
    errors = 0
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            if message.get("code") == CLOSE_MESSAGE_TOO_BIG:
                log.warning("twilio_message_rejected", error="message exceeds the size cap")
                return "protocol_error"
            return "caller_hangup"
        text = message.get("text")
        now = time.monotonic()
        try:
            if text is None:
                raise tw.StreamProtocolError("binary frame (Media Streams is text only)")
            call.on_twilio(tw.parse(text), now)
            if call.stats.frames_in % METRICS_EVERY_FRAMES == 0:
                _sync_metrics(rt)
        except (tw.StreamProtocolError, ValueError) as exc:
            errors += 1
            log.warning("twilio_message_rejected", error=str(exc), count=errors)
            if errors >= MAX_PROTOCOL_ERRORS:
                return "protocol_error"
            continue
        if call.upstream_out:
            try:
                await _send_upstream(rt)
            except ConnectionClosed:
                # The upstream pump sees the same close and replaces the session.
                rt.upstream_ready = False
        if call.effects:
            reason = _apply_effects(rt, now)
            if reason:
                return reason


async def _upstream_pump(rt: CallRuntime, bridge: Bridge) -> str:
    call, upstream, dialect = rt.call, rt.upstream, rt.dialect
    try:
        async for raw in upstream:
            received = time.perf_counter()
            now = time.monotonic()
            try:
                event = dialect.decode(raw)
            except UpstreamProtocolError as exc:
                log.warning("upstream_message_rejected", error=str(exc))
                continue
            call.on_upstream(event, now)
            clear_sent_at = None
            if call.twilio_out:
                clear_sent_at = await _send_twilio(rt)
                if not rt.first_audio_seen and call.stats.frames_out:
                    rt.first_audio_seen = True
                    if rt.webhook_at is not None:
                        metrics.TIME_TO_FIRST_AUDIO.observe(max(0.0, time.time() - rt.webhook_at))
            if call.upstream_out:
                await _send_upstream(rt)
            if call.effects:
                reason = _apply_effects(rt, now, received, clear_sent_at, bridge)
                if reason:
                    return reason
    except ConnectionClosed:
        pass
    return "upstream_closed"


async def _send_twilio(rt: CallRuntime) -> float | None:
    """Send the Twilio outbox in order; returns when the first message left (the `clear` of a
    barge-in is always first)."""
    out, rt.call.twilio_out = rt.call.twilio_out, []
    send = rt.twilio.send_text
    first_sent_at = None
    for message in out:
        await send(message)
        if first_sent_at is None:
            first_sent_at = time.perf_counter()
    return first_sent_at


_APPEND_PREFIX = '{"type":"input_audio_buffer.append"'


async def _send_upstream(rt: CallRuntime) -> None:
    """Send the upstream outbox. Policy when the upstream is slower than real time: caller
    audio beyond `UPSTREAM_AUDIO_BACKLOG_BYTES` of unsent data is dropped and counted (the
    newest frames go, so nothing waits), while control messages are always sent."""
    if not rt.upstream_ready:
        return  # kept in the outbox: sent after the replay once the new session is up
    out, rt.call.upstream_out = rt.call.upstream_out, []
    upstream = rt.upstream
    for message in out:
        if (
            message.startswith(_APPEND_PREFIX)
            and upstream.transport.get_write_buffer_size() > UPSTREAM_AUDIO_BACKLOG_BYTES
        ):
            rt.call.stats.frames_dropped += 1
            metrics.FRAMES_DROPPED.labels(direction="inbound", reason="upstream_slow").inc()
            if (
                rt.call.stats.frames_dropped in (1, 50, 500)
                or rt.call.stats.frames_dropped % 5000 == 0
            ):
                log.warning("upstream_slow", frames_dropped=rt.call.stats.frames_dropped)
            continue
        await upstream.send(message)


def _apply_effects(
    rt: CallRuntime,
    now: float,
    received: float | None = None,
    clear_sent_at: float | None = None,
    bridge: Bridge | None = None,
) -> str | None:
    effects, rt.call.effects = rt.call.effects, []
    end_reason = None
    for effect in effects:
        if isinstance(effect, Log):
            getattr(log, effect.level)(effect.event, **effect.fields)
            if effect.event == "upstream_error":
                metrics.UPSTREAM_ERRORS.labels(code=str(effect.fields.get("code"))).inc()
        elif isinstance(effect, Measure):
            if effect.name == "turn_latency":
                metrics.TURN_LATENCY.observe(effect.value)
        elif isinstance(effect, BargeIn):
            reaction_ms = None
            if received is not None and clear_sent_at is not None:
                reaction_ms = round((clear_sent_at - received) * 1000.0, 3)
            log.info(
                "barge_in",
                item_id=effect.item_id,
                played_ms=effect.played_ms,
                reaction_ms=reaction_ms,
            )
            metrics.BARGE_INS.inc()
        elif isinstance(effect, RunTool):
            if rt.tools is not None:
                rt.tools.start(effect.call)
        elif isinstance(effect, Dtmf):
            if rt.tools is not None:
                rt.tools.dtmf(effect.digit)
        elif isinstance(effect, End):
            end_reason = end_reason or effect.reason
        elif isinstance(effect, PlaybackIdle):
            if rt.tools is not None:
                rt.tools.playback_idle()
    if end_reason:
        rt.end_reason = rt.end_reason or end_reason
    return end_reason


# Why a call ended → the `outcome` label of voicebridge_calls_total.
_OUTCOMES = {
    "caller_hangup": "caller_hangup",
    "agent_hangup": "agent_hangup",
    "transferred": "transferred",
    "upstream_failed": "upstream_failed",
    "upstream_closed": "upstream_failed",
    "timeout": "timeout",
    "max_duration": "timeout",
    "idle": "timeout",
    "protocol_error": "error",
    "error": "error",
}


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _sync_metrics(rt: CallRuntime) -> None:
    """Move the frame counters by what changed since the last sync."""
    stats, done = rt.call.stats, rt.reported
    if stats.frames_in != done.frames_in:
        metrics.FRAMES_IN.inc(stats.frames_in - done.frames_in)
        done.frames_in = stats.frames_in
    if stats.frames_out != done.frames_out:
        metrics.FRAMES_OUT.inc(stats.frames_out - done.frames_out)
        done.frames_out = stats.frames_out
    if stats.backlog_dropped != done.backlog_dropped:
        metrics.FRAMES_DROPPED.labels(direction="inbound", reason="upstream_not_ready").inc(
            stats.backlog_dropped - done.backlog_dropped
        )
        done.backlog_dropped = stats.backlog_dropped
    if stats.deltas_dropped != done.deltas_dropped:
        metrics.FRAMES_DROPPED.labels(direction="outbound", reason="barge_in").inc(
            stats.deltas_dropped - done.deltas_dropped
        )
        done.deltas_dropped = stats.deltas_dropped
    if rt.upstream.transport is not None:
        metrics.QUEUE_DEPTH.labels(queue="upstream_send_kib").observe(
            rt.upstream.transport.get_write_buffer_size() / 1024
        )


def _finish(call: Call, reason: str) -> None:
    metrics.CALLS.labels(outcome=_OUTCOMES.get(reason, "completed")).inc()
    metrics.CALL_DURATION.observe(time.monotonic() - call.started_at)
    call.finish(reason, time.monotonic())
    for effect in call.effects:
        if isinstance(effect, Log):
            getattr(log, effect.level)(effect.event, **effect.fields)
    call.effects.clear()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
