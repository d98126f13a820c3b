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
from typing import Any

from bridge import metrics
from bridge import twilio_stream as tw
from bridge.after_stream import Transfer
from bridge.call import (
    Attempt,
    BargeIn,
    Call,
    CallStats,
    CarryOut,
    DropUpstream,
    Effect,
    End,
    GiveUp,
    Log,
    Measure,
    Pause,
    PingUpstream,
    Reconnect,
    RenewSession,
    RunTool,
    TranscriptLine,
)
from bridge.call_report import CallReport
from bridge.errors import describe
from bridge.logs import get_logger
from bridge.realtime.dialect import UpstreamProtocolError
from bridge.realtime.events import FunctionCall
from bridge.realtime.upstream import connect
from bridge.services import Services
from bridge.tasks import TaskSet
from bridge.tools.base import Handoff
from bridge.tools.runner import ToolRunner, parse_arguments
from bridge.twiml import DIAL_ENDED_PATH, transfer_twiml
from bridge.ws import TwilioSocket, UpstreamSocket

log = get_logger("voicebridge.stream")
_monotonic = time.monotonic
_feed_twilio = tw.feed

CLOSE_POLICY_VIOLATION = 1008
CLOSE_NORMAL = 1000
CLOSE_UPSTREAM_FAILED = 1011
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013
LIMITS_TICK_S = 0.5  # how often the call's timers are looked at, and metrics synced
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
        called: str = "",
    ) -> None:
        self.call = call
        self.report = report  # the call's events and record for the business
        self.twilio = twilio
        self.upstream = upstream
        self.services = services
        self.tools = tools
        self.webhook_at = webhook_at  # wall clock of the webhook, for time to first audio
        self.called = called  # the number the caller dialled: a transfer's caller ID
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
        self._pongs_seen = 0
        self._feed_upstream = call.dialect.feed

    def end(self, reason: str) -> None:
        """End the call from outside (shutdown): the core keeps the first reason given."""
        self.call.end(reason)
        self.drain()

    # The hot path ------------------------------------------------------------------------------

    def on_twilio_text(self, text: str) -> None:
        call = self.call
        try:
            _feed_twilio(text, call, _monotonic())
        except (tw.StreamProtocolError, ValueError) as exc:
            call.twilio_rejected(str(exc))
        try:
            call.drain(self)
        except Exception as exc:
            self._failed(exc)

    def on_upstream_text(self, text: str) -> None:
        now = self._fed_at = _monotonic()
        call = self.call
        try:
            self._feed_upstream(text, call, now)
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

    def send_twilio(self, messages: list[str], urgent: bool) -> int:
        if self._closed:
            return 0
        backlog = self.twilio.send_batch(messages, urgent)
        if urgent:
            self._clear_sent_at = time.monotonic()
        if not self._first_audio_seen:
            self._first_audio_seen = True
            if self.webhook_at is not None:
                metrics.TIME_TO_FIRST_AUDIO.observe(max(0.0, time.time() - self.webhook_at))
        return backlog

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
                elif effect.name.startswith("rate_limit_remaining:"):
                    name = effect.name.partition(":")[2]
                    metrics.RATE_LIMIT_REMAINING.labels(limit=name).set(effect.value)
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
            elif isinstance(effect, PingUpstream):
                self._pongs_seen = self.upstream.pongs
                self.upstream.ping()
            elif isinstance(effect, DropUpstream):
                self.upstream.abort()  # its close callback takes the reconnect path
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
        """The call's timers: limits, idleness, renewal, the handoff's watchdog, a frozen
        upstream."""
        while True:
            await asyncio.sleep(LIMITS_TICK_S)
            self.sync_metrics()  # the frame counters, off the hot path
            now = time.monotonic()
            if self.upstream.pongs != self._pongs_seen:
                self._pongs_seen = self.upstream.pongs
                self.call.upstream_pong(now)
            self.call.tick(now)
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
                dial = transfer_twiml(
                    Transfer(handoff.target or "", handoff.number),
                    caller_id=self.called,
                    action_url=self.services.settings.public_http_url(DIAL_ENDED_PATH) or "",
                )
                outcome = await control.redirect(call_sid, str(dial))
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
        if call.awaiting_detection:
            self.tasks.spawn(self._detection_from_elsewhere(), "detection")
        try:
            await self.done
        except asyncio.CancelledError:
            call.end("shutdown")
            raise
        finally:
            await self._teardown()

    async def _detection_from_elsewhere(self) -> None:
        """`/amd-status` may reach another worker or replica than this stream's: it leaves
        the result in the shared store, looked for here until the call has its answer."""
        call = self.call
        while call.awaiting_detection and not call.ended:
            await asyncio.sleep(DETECTION_POLL_S)
            kind = await self.services.answered_by.take(call.call_sid)
            if kind is not None:
                call.answered_by(kind, time.monotonic())
                self.drain()
                return

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
        # Before the socket closes: Twilio asks the `<Connect>` action as soon as it has.
        await self.services.outcomes.record(call.call_sid, call.after_stream)
        close_code = {
            "protocol_error": CLOSE_POLICY_VIOLATION,
            # The stream failed the caller: its action answers with the fallback.
            "upstream_failed": CLOSE_UPSTREAM_FAILED,
            "session_rejected": CLOSE_UPSTREAM_FAILED,
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


DETECTION_POLL_S = 0.25
"""How often a call waiting for `AnsweredBy` looks for a result another process received."""

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
    "session_rejected": "upstream_failed",
    "timeout": "timeout",
    "max_duration": "timeout",
    "idle": "timeout",
    "protocol_error": "error",
    "error": "error",
}


class LogOnly:
    """The sink of a call that never got sockets (the upstream could not be opened)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def send_twilio(self, messages: list[str], urgent: bool) -> int:
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


def finish(call: Call, sink: CallRuntime | LogOnly, reason: str | None = None) -> None:
    """The call's last lines and its metrics."""
    now = time.monotonic()
    call.finish(now, reason)
    metrics.CALLS.labels(outcome=_OUTCOMES.get(call.end_reason or "", "completed")).inc()
    metrics.CALL_DURATION.observe(now - call.started_at)
    call.drain(sink)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
