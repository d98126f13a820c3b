"""The media-stream adapter: one Twilio socket, one upstream socket, one `Call` between them.

Both sockets deliver messages as callbacks (`bridge/ws.py`); each message is fed to the `Call`
and its outboxes are handed to the sockets before the callback returns (`CallRuntime.flush`):
Twilio first (a `clear` never waits behind anything), then upstream, then the effects. The
sockets write them at the end of the event loop's pass (`bridge.ws.LoopWrites`), a batch
with effects (a barge-in's `clear`) at once. Nothing awaits on the hot path, so messages
leave in exactly the order the `Call` decided, from whichever side caused them. Tasks exist
only beside it: the call's own coroutine (set-up, then waiting for the end, then teardown),
the limits timer, a reconnect while the upstream is replaced, tools. While a lost upstream is
being replaced, upstream messages wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from bridge import metrics
from bridge import twilio_stream as tw
from bridge.audio import make_pipeline
from bridge.call import BargeIn, Call, CallStats, Dtmf, End, Log, Measure, PlaybackIdle, RunTool
from bridge.logs import get_logger
from bridge.realtime.dialect import Dialect, UpstreamProtocolError
from bridge.realtime.upstream import UPSTREAM_AUDIO_BACKLOG_BYTES, connect
from bridge.security import TokenError
from bridge.tools import function_tools, speak_exactly
from bridge.tools.runner import ToolRunner
from bridge.ws import TwilioSocket, UpstreamSocket

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
# Audio queued towards a caller whose side stopped reading (about 30 s of frames and marks):
# beyond it the call is ended rather than let the process hold it forever.
TWILIO_WRITE_LIMIT_BYTES = 1024 * 1024
LIMITS_TICK_S = 0.5  # how often call length and idleness are checked, and metrics synced
IDLE_GOODBYE = "I haven't heard from you, so I'll end the call now. Goodbye."
# An upstream lost mid-call is replaced within this window, or the call falls back.
RECONNECT_WINDOW_S = 2.0
RECONNECT_PAUSE_S = 0.2  # between attempts inside the window
# Providers cap a session's length (OpenAI: 60 minutes); a call is moved to a fresh session,
# at a quiet moment, before that.
SESSION_RENEW_S = 55 * 60.0
_APPEND_PREFIX = '{"type":"input_audio_buffer.append"'


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
    """One live call: its sockets, the hot path between them, and the tasks beside it."""

    call: Call
    twilio: TwilioSocket
    upstream: UpstreamSocket
    dialect: Dialect
    bridge: Bridge
    tools: ToolRunner | None = None
    helpers: set[asyncio.Task[Any]] = field(default_factory=set)  # timers, reconnects
    persona: Persona | None = None
    max_call_s: float = 1800.0
    idle_s: float = 30.0
    session_started: float = field(default_factory=time.monotonic)
    upstream_ready: bool = True  # False while a lost upstream is being replaced
    renewing: bool = False
    end_reason: str | None = None
    done: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    webhook_at: float | None = None  # wall clock of the webhook, for time to first audio
    first_audio_seen: bool = False
    reported: CallStats = field(default_factory=CallStats)  # what the metrics already have
    protocol_errors: int = 0
    # The call's contextvars (its call_sid for the logs); see `attach_upstream`.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    def end(self, reason: str) -> None:
        """End the call (call control, limits, shutdown, a socket closing): the first reason
        given is the one kept; the call's coroutine then tears everything down."""
        if self.end_reason is None:
            self.end_reason = reason
        if not self.done.done():
            self.done.set_result(self.end_reason)

    # The hot path ------------------------------------------------------------------------------

    def on_twilio_text(self, text: str) -> None:
        now = time.monotonic()
        call = self.call
        try:
            call.on_twilio(tw.parse(text), now)
        except (tw.StreamProtocolError, ValueError) as exc:
            self.context.run(self.on_twilio_error, str(exc))
            return
        try:
            self.flush(now)
        except Exception as exc:
            self.context.run(self._failed, exc)

    def on_twilio_error(self, reason: str) -> None:
        self.protocol_errors += 1
        log.warning("twilio_message_rejected", error=reason, count=self.protocol_errors)
        if self.protocol_errors >= MAX_PROTOCOL_ERRORS:
            self.end("protocol_error")

    def on_twilio_closed(self) -> None:
        if self.twilio.close_code == CLOSE_MESSAGE_TOO_BIG and not self.done.done():
            log.warning("twilio_message_rejected", error="message exceeds the size cap")
            self.end("protocol_error")
        self.end("caller_hangup")

    def on_upstream_text(self, text: str) -> None:
        now = time.monotonic()
        try:
            event = self.dialect.decode(text)
        except UpstreamProtocolError as exc:
            self.context.run(self.on_upstream_error, str(exc))
            return
        try:
            self.call.on_upstream(event, now)
            self.flush(now)
        except Exception as exc:
            self.context.run(self._failed, exc)

    def on_upstream_error(self, reason: str) -> None:
        log.warning("upstream_message_rejected", error=reason)

    def on_upstream_closed(self) -> None:
        """The model's socket went away: replace it within the window, or fall back."""
        if self.done.done() or not self.upstream_ready:
            return
        self.upstream_ready = False  # one reconnect at a time; outboxes wait meanwhile
        task = asyncio.create_task(_reconnect(self, self.bridge), name="reconnect")
        self.helpers.add(task)
        task.add_done_callback(self.helpers.discard)

    def flush(self, now: float) -> None:
        """Write what the `Call` decided, in order: Twilio, upstream, effects. `now` is when
        the message that caused it arrived (a barge-in's reaction time counts from it)."""
        call = self.call
        clear_sent_at = None
        if call.twilio_out:
            clear_sent_at = self.send_twilio()
            if not self.first_audio_seen and call.stats.frames_out:
                self.first_audio_seen = True
                if self.webhook_at is not None:
                    metrics.TIME_TO_FIRST_AUDIO.observe(max(0.0, time.time() - self.webhook_at))
        if call.upstream_out:
            self.send_upstream()
        if call.effects:
            self.context.run(_apply_effects, self, now, clear_sent_at)

    def send_twilio(self) -> float | None:
        """The Twilio outbox in one write; returns when it left if there are effects to report
        it to (a barge-in's `clear` is always first in the outbox). With effects it leaves at
        once rather than at the end of the loop's pass, so a barge-in's reaction time is when
        the `clear` was written."""
        call = self.call
        out, call.twilio_out = call.twilio_out, []
        twilio = self.twilio
        twilio.send_batch(out, at_once=bool(call.effects))
        sent_at = time.monotonic() if call.effects else None
        if twilio.write_buffer_size() > TWILIO_WRITE_LIMIT_BYTES:
            buffered = twilio.write_buffer_size()
            self.context.run(log.warning, "twilio_not_reading", buffered=buffered)
            self.end("protocol_error")
        return sent_at

    def send_upstream(self) -> None:
        """The upstream outbox. Policy when the upstream is slower than real time: caller
        audio beyond `UPSTREAM_AUDIO_BACKLOG_BYTES` of unsent data is dropped and counted
        (the newest frames go, so nothing waits), while control messages are always sent."""
        if not self.upstream_ready:
            return  # kept in the outbox: sent after the replay once the new session is up
        out, self.call.upstream_out = self.call.upstream_out, []
        upstream = self.upstream
        # Read once per flush (usually one append): the buffer only grows when the kernel's
        # is full, and then every append of this flush goes the same way.
        slow = upstream.write_buffer_size() > UPSTREAM_AUDIO_BACKLOG_BYTES
        for message in out:
            if slow and message.startswith(_APPEND_PREFIX):
                stats = self.call.stats
                stats.frames_dropped += 1
                metrics.FRAMES_DROPPED.labels(direction="inbound", reason="upstream_slow").inc()
                if stats.frames_dropped in (1, 50, 500) or stats.frames_dropped % 5000 == 0:
                    dropped = stats.frames_dropped
                    self.context.run(log.warning, "upstream_slow", frames_dropped=dropped)
                continue
            upstream.send(message)

    async def flush_async(self) -> None:
        """For the tool runner, which awaits its flush."""
        self.flush(time.monotonic())

    # The message callbacks run in the loop's context; whatever logs or starts tasks runs in
    # the call's (`self.context`), so every line carries the call_sid and tool tasks inherit
    # it. Entering it costs too much to do for every frame.

    def attach_upstream(self, upstream: UpstreamSocket) -> None:
        self.upstream = upstream
        run = self.context.run
        upstream.attach(
            self.on_upstream_text,
            lambda reason: run(self.on_upstream_error, reason),
            lambda: run(self._upstream_closed_by, upstream),
        )

    def attach_twilio(self) -> None:
        run = self.context.run
        self.twilio.attach(
            self.on_twilio_text,
            lambda reason: run(self.on_twilio_error, reason),
            lambda: run(self.on_twilio_closed),
        )

    def _upstream_closed_by(self, upstream: UpstreamSocket) -> None:
        if upstream is self.upstream:
            self.on_upstream_closed()

    def _failed(self, exc: BaseException) -> None:
        log.error("call_failed", error=_describe(exc))
        self.end("error")


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


async def handle_media_stream(ws: TwilioSocket, bridge: Bridge) -> None:
    """Serve one Twilio Media Stream from the handshake to the last log line."""
    if bridge.signatures is not None and not bridge.signatures.stream_valid(
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
    persona_name = start.custom_parameters.get("persona")
    if bridge.tokens is not None:
        try:
            claims = bridge.tokens.verify(start.custom_parameters.get("token"), start.call_sid)
        except TokenError as exc:
            log.warning("stream_rejected", reason=str(exc))
            metrics.CALLS.labels(outcome="rejected_auth").inc()
            await ws.close(CLOSE_POLICY_VIOLATION, "invalid stream token")
            structlog.contextvars.unbind_contextvars("call_sid", "stream_sid")
            return
        persona_name = claims.persona  # signed: trust it over the plain parameter
    try:
        await _run_call(ws, bridge, start, persona_name)
    finally:
        structlog.contextvars.unbind_contextvars("call_sid", "stream_sid")


async def _run_call(
    ws: TwilioSocket, bridge: Bridge, start: tw.Start, persona_name: str | None
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
            await ws.close(CLOSE_UPSTREAM_FAILED, "upstream unavailable")
            return
        runtime = CallRuntime(
            call=call, twilio=ws, upstream=upstream, dialect=call.dialect, bridge=bridge
        )
        runtime.webhook_at = _float_or_none(params.get("webhook_at")) or stream_opened_at
        runtime.persona = persona
        runtime.max_call_s = persona.limits.max_call_seconds or settings.MAX_CALL_SECONDS
        runtime.idle_s = persona.limits.idle_seconds or settings.IDLE_TIMEOUT_SECONDS
        runtime.tools = ToolRunner(
            call,
            flush=runtime.flush_async,
            end=runtime.end,
            context=ToolContext(
                bridge=bridge, persona=persona, call_sid=start.call_sid, caller_number=caller
            ),
        )
        bridge.runtimes.add(runtime)
        try:
            await _serve(runtime)
        finally:
            bridge.runtimes.discard(runtime)
    finally:
        bridge.call_ended()


async def _serve(rt: CallRuntime) -> None:
    """Start the hot path, wait for the end, tear down."""
    call = rt.call
    call.upstream_opened(time.monotonic())
    rt.attach_upstream(rt.upstream)
    rt.flush(time.monotonic())
    rt.attach_twilio()  # the messages that arrived meanwhile are fed first
    limits = asyncio.create_task(_enforce_limits(rt), name=f"limits:{call.call_sid}")
    rt.helpers.add(limits)
    try:
        await rt.done
    except asyncio.CancelledError:
        rt.end("shutdown")
        raise
    finally:
        rt.twilio.detach()
        rt.upstream.detach()
        for task in list(rt.helpers):
            task.cancel()
        await asyncio.gather(*rt.helpers, return_exceptions=True)
        rt.helpers.clear()
        if rt.tools is not None:
            await rt.tools.aclose()
        with contextlib.suppress(Exception):
            await rt.upstream.close()
        final = rt.end_reason or "error"
        close_code = {
            "protocol_error": CLOSE_POLICY_VIOLATION,
            # Twilio continues with the persona's fallback TwiML after </Connect>.
            "upstream_failed": CLOSE_UPSTREAM_FAILED,
        }.get(final, CLOSE_NORMAL)
        if rt.twilio.open:
            with contextlib.suppress(Exception):
                await rt.twilio.close(close_code)
        _sync_metrics(rt)
        # A transfer or hang-up already requested from Twilio is why the call ended, even
        # when Twilio's `stop` beat the REST answer to the stream.
        _finish(call, (rt.tools and rt.tools.end_reason) or final)
        rt.ended.set()


async def _reconnect(rt: CallRuntime, bridge: Bridge) -> None:
    """Open a new upstream session within `RECONNECT_WINDOW_S` and bring it up to date.

    Caller audio meanwhile waits in the call's backlog; what the caller already has keeps
    playing. Ends the call as `upstream_failed` when no session could be opened in time.
    """
    call = rt.call
    lost_at = time.monotonic()
    renewing, rt.renewing = rt.renewing, False
    rt.upstream_ready = False
    call.upstream_lost(lost_at)
    rt.flush(lost_at)
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
        old = rt.upstream
        old.detach()
        rt.attach_upstream(upstream)
        rt.session_started = time.monotonic()
        call.upstream_reopened(rt.session_started)
        rt.upstream_ready = True
        rt.flush(rt.session_started)
        log.info(
            "upstream_reconnected",
            attempt=attempt,
            renewal=renewing,
            gap_ms=round((time.monotonic() - lost_at) * 1000.0, 1),
            replayed_items=len(call.history),
        )
        if not upstream.open:
            rt.on_upstream_closed()
        with contextlib.suppress(Exception):
            await old.close()
        return
    log.error("upstream_reconnect_gave_up", attempts=attempt, window_s=RECONNECT_WINDOW_S)
    rt.end("upstream_failed")


async def _enforce_limits(rt: CallRuntime) -> None:
    """Call length and idleness, checked every half second beside the hot path, where the
    call's frame counters also reach the metrics.

    At the length limit the persona's goodbye is spoken, then the call is hung up. When
    neither side has done anything for the idle time, the persona's reprompt is spoken once;
    if the caller still says nothing for another idle period, a short goodbye and hang-up.
    """
    call, persona = rt.call, rt.persona
    reprompted_at: float | None = None
    tools = rt.tools
    caller = tools.context.caller_number if tools is not None and tools.context else ""
    while True:
        await asyncio.sleep(LIMITS_TICK_S)
        _sync_metrics(rt)  # the frame counters, off the hot path
        if tools is None or persona is None:
            continue
        now = time.monotonic()
        if now - call.started_at >= rt.max_call_s:
            log.info("call_limit", limit="max_call_seconds", seconds=rt.max_call_s)
            tools.end_with(
                persona.render(persona.limits.goodbye, caller_number=caller), "max_duration"
            )
            return
        if now - rt.session_started >= SESSION_RENEW_S and call.idle and rt.upstream_ready:
            # Move to a fresh session while nobody is speaking; the reconnect path does it.
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
                rt.flush(now)
            continue
        log.info("call_limit", limit="idle_seconds", seconds=rt.idle_s)
        tools.end_with(IDLE_GOODBYE, "idle")
        return


def _apply_effects(rt: CallRuntime, now: float, clear_sent_at: float | None = None) -> None:
    effects, rt.call.effects = rt.call.effects, []
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
            if clear_sent_at is not None:
                reaction_ms = round((clear_sent_at - now) * 1000.0, 3)
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
            rt.end(effect.reason)
        elif isinstance(effect, PlaybackIdle):
            if rt.tools is not None:
                rt.tools.playback_idle()


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


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


_UPSTREAM_SEND_KIB = metrics.QUEUE_DEPTH.labels(queue="upstream_send_kib")


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
    _UPSTREAM_SEND_KIB.observe(rt.upstream.write_buffer_size() / 1024)


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
