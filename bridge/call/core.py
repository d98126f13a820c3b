"""One phone call's life, as a state machine with no I/O: everything that decides lives here.

The adapter (`bridge/stream.py`) feeds it Twilio messages, upstream Realtime events, tool
outcomes, the outcome of call control and the reconnect loop, and a `tick` every half
second, each with the monotonic time `now`; after each it calls `drain` once, which hands the
outbox to the adapter in wire order (`effects.py`). Tests drive it with plain lists of events.

Its phase is derived from the facts it keeps, never stored twice: `starting` (the upstream
session is opening), `live`, `reconnecting` (a lost session is being replaced), `ending` (a
reason to end is set; the adapter tears down), `ended` (`finish` logged `call_ended`).

The rules it keeps:
- inbound audio is converted and appended upstream frame by frame (20 ms, no batching: the
  server's VAD sees speech as early as possible); while no session is up it waits in a
  bounded backlog, control messages in the outbox;
- outbound audio is framed to 20 ms with a mark after each frame, so the playback clock
  knows what the caller heard at 20 ms resolution;
- barge-in: on speech start while the caller hears the agent, `clear` first, then truncate
  each affected item at what was heard, cancel only when the server won't, and drop every
  late delta of the interrupted response;
- at most one response at a time: `response.create` is only sent when none is active or
  requested; the function calls of one response are answered together, then one create;
- call control (`handoff.py`), limits and idleness (`limits.py`), reconnect decisions
  (`reconnect.py`) and the keypad menu are decided here, their timers being the ticks;
- the transcript is emitted in conversation order, agent lines once their audio has played.

Size: over 600 lines on purpose. Every rule that changes the call's state is a method of this
one class, so a reader finds the whole life of a call here and no other object holds a part
of it (the parts with state of their own, handoff, limits, reconnect plan, playback clock and
transcript, are the modules beside it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bridge import twilio_stream as tw
from bridge.after_stream import DELIBERATE, AfterStream, Fallback, Hangup, Transfer
from bridge.call.detection import Detection, answer_for
from bridge.call.effects import (
    BargeIn,
    CarryOut,
    DropUpstream,
    End,
    Log,
    Measure,
    Outbox,
    PingUpstream,
    Reconnect,
    RenewSession,
    RunTool,
    Sink,
    TranscriptLine,
)
from bridge.call.handoff import HandoffProgress
from bridge.call.limits import EndForLimit, LimitWatch, Renew, Reprompt
from bridge.call.reconnect import GiveUp, ReconnectPlan, ReconnectStep
from bridge.call.rules import CallRules
from bridge.playback import ItemPlayback, PlaybackClock
from bridge.realtime import events as ev
from bridge.realtime.dialect import Dialect
from bridge.tools.base import Handoff, ToolResult, speak_exactly
from bridge.tools.dtmf import DtmfOutcome, SayLine, ToModel
from bridge.transcript import Transcript

if TYPE_CHECKING:
    from bridge.audio.pipeline import AudioPipeline
    from bridge.call.recorder import CallRecorder
    from bridge.tools.call_control import ControlOutcome

# Caller audio that arrives while the upstream session is not up is kept, up to this much,
# and sent once it is; older frames are dropped (and counted) beyond it.
BACKLOG_FRAMES = 100  # 2 s of 20 ms frames
CONTINUE_INSTRUCTIONS = (
    "The line to you dropped for a moment while you were answering. Continue your answer "
    "briefly from where you were cut off, without repeating what was already said."
)
# Upstream errors that leave the session usable and need no more than a log line.
BENIGN_ERRORS = frozenset(
    {
        "response_cancel_not_active",
        "conversation_already_has_active_response",
        "input_audio_buffer_commit_empty",
    }
)

_INBOUND_TRACKS = frozenset({"inbound", "inbound_track"})
_TAIL = tw.MESSAGE_TAIL

Keypad = Callable[[str], DtmfOutcome | None]
"""What a key does on this call: the persona's menu, decided by `bridge.tools.dtmf`."""


class Phase(StrEnum):
    STARTING = "starting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDING = "ending"
    ENDED = "ended"


@dataclass(slots=True)
class _ToolBatch:
    """The function calls of one response; answered together once all results are in."""

    calls: dict[str, ev.FunctionCall] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    response_done: bool = False
    # Whether the model should answer the outputs; call control (hang-up, transfer) says
    # its last words itself and asks for no new response.
    respond: bool = False


@dataclass(slots=True)
class CallStats:
    turns: int = 0
    barge_ins: int = 0
    frames_in: int = 0
    frames_out: int = 0
    frames_dropped: int = 0  # caller frames that never reached the model
    backlog_dropped: int = 0  # of those, dropped while no upstream session was up
    slow_dropped: int = 0  # of those, dropped because the upstream read too slowly
    deltas_dropped: int = 0  # agent audio of interrupted responses, never played


class Call:
    """The state of one call between Twilio and one Realtime session at a time."""

    def __init__(
        self,
        *,
        stream_sid: str,
        call_sid: str,
        dialect: Dialect,
        audio: AudioPipeline,
        session: ev.SessionConfig,
        greeting: str | None,
        started_at: float,
        rules: CallRules = CallRules(),  # noqa: B008 (frozen)
        keypad: Keypad | None = None,
        recorder: CallRecorder | None = None,
        opening: str | None = None,
        detection: Detection | None = None,
    ) -> None:
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self._media_head = tw.media_head(stream_sid)  # each frame's messages are one concat
        self._mark_head = tw.mark_head(stream_sid)
        self.dialect = dialect
        self.audio = audio
        self.session = session
        self.greeting = greeting
        self.opening = opening  # first instructions instead of the greeting (a call resumed)
        self.started_at = started_at
        self.rules = rules
        self._twilio_limit = rules.twilio_write_limit_bytes  # read on every drain
        self._audio_limit = rules.upstream_audio_backlog_bytes
        self._keypad = keypad
        # A call the bridge placed waits for who answered (`answered_by`): until then its
        # session does not answer speech by itself, and the greeting is held back.
        self._detection = detection
        self._session_wanted = session
        if detection is not None:
            quiet = replace(session.turn_detection, create_response=False)
            self.session = replace(session, turn_detection=quiet)
        self._recorder = recorder  # the call's audio facts, for a recording (None: none)

        self._out = Outbox()
        self.stats = CallStats()
        self.playback = PlaybackClock()
        self.transcript = Transcript()
        self.items: dict[str, ItemPlayback] = {}

        # The facts the phase is derived from.
        self._upstream_up = False
        self._reconnect: ReconnectPlan | None = None
        self._end_reason: str | None = None
        self._finished = False

        self._session_started = started_at
        self._update_sent_at: float | None = None  # a session.update not yet confirmed
        self._heard_at = started_at  # the upstream's last event, or its last pong
        self._pinged = False
        self._renewing = False
        self._limits = LimitWatch(rules, started_at)
        self._handoff: HandoffProgress | None = None
        self._handoff_reason: str | None = None  # Twilio was asked: why the call ends
        self._deferred_line: str | None = None
        self.protocol_errors = 0

        self._backlog: list[str] = []
        self._greeted = False
        self._active_response: str | None = None
        self._response_requested = False
        self._interrupted: set[str] = set()
        self._tool_batches: dict[str, _ToolBatch] = {}
        self._calls_written: dict[str, dict[str, ev.FunctionCall]] = {}  # by response, call
        # Items we created (function outputs, user text) that want the model to answer them,
        # and those a `response.create` of ours was sent for: each is asked for once, so an
        # item the service never confirms cannot keep the agent talking.
        self._owed: set[str] = set()
        self._asked: set[str] = set()
        self._item_seq = 0
        self._speech_stopped_at: float | None = None
        self._continue_after_reconnect = False
        # A response asked for and never begun when the session was lost is asked again.
        self._requested_instructions: str | None = None
        self._ask_again = False
        # The conversation as the caller experienced it, for replay into a new session.
        self.history: list[tuple[str, str]] = []
        # Last sign of life from either side (speech, agent audio, playback); the idle limit.
        self.last_activity = started_at
        self.last_caller_speech: float | None = None
        self._function_names: dict[str, str] = {}  # item_id → name (beta omits it later)
        self._bytes_per_ms = audio.upstream_bytes_per_ms
        # The hot path's bound methods, looked up once (every 20 ms frame uses them).
        self._inbound = audio.inbound
        self._outbound = audio.outbound
        self._append = dialect.append_audio
        self._frame_sent = self.playback.frame_sent
        self._mark_echoed = self.playback.mark_echoed

    # The phase and the outbox --------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        if self._finished:
            return Phase.ENDED
        if self._end_reason is not None:
            return Phase.ENDING
        if self._reconnect is not None:
            return Phase.RECONNECTING
        return Phase.LIVE if self._upstream_up else Phase.STARTING

    @property
    def ended(self) -> bool:
        """A reason to end is set (`ending`) or the call is over (`ended`)."""
        return self._end_reason is not None or self._finished

    @property
    def end_reason(self) -> str | None:
        """Why the call ends. Once Twilio has been asked to transfer or hang up, that is the
        reason, even if Twilio's `stop` reached the stream before its REST answer did."""
        return self._handoff_reason or self._end_reason

    @property
    def after_stream(self) -> AfterStream:
        """What Twilio should do with the call once this stream has ended (the answer to the
        `<Connect>` action): a transfer under way is dialled, a deliberate end hangs up, and
        anything else is the agent failing the caller, who hears the persona's fallback."""
        progress = self._handoff
        if progress is not None and progress.stage == "acting":
            handoff = progress.handoff
            if handoff.kind == "transfer" and handoff.number:
                return Transfer(handoff.target or "", handoff.number)
            return Hangup()
        if self.end_reason in DELIBERATE:
            return Hangup()
        return Fallback()

    def drain(self, sink: Sink) -> None:
        """Hand everything decided since the last drain to the adapter, in wire order:
        Twilio, upstream control, upstream audio, effects. Upstream messages wait while no
        session is up; caller audio is dropped first when the upstream reads too slowly."""
        out = self._out
        if out.twilio:
            backlog = sink.send_twilio(out.twilio, out.urgent)
            out.twilio.clear()
            out.urgent = False
            if backlog > self._twilio_limit and not self.ended:
                self._log("twilio_not_reading", "warning", buffered=backlog)
                self.end("protocol_error")
        if self._upstream_up:
            if out.control:
                sink.send_upstream(out.control)
                out.control.clear()
            if out.audio:
                # Read once per drain (usually one append): the buffer only grows when the
                # kernel's is full, and then every append of this drain goes the same way.
                if sink.upstream_backlog() > self._audio_limit:
                    self._upstream_slow(len(out.audio))
                else:
                    sink.send_upstream(out.audio)
                out.audio.clear()
        if out.effects:
            effects, out.effects = out.effects, []
            sink.apply(effects)

    def _upstream_slow(self, frames: int) -> None:
        stats = self.stats
        for _ in range(frames):
            stats.frames_dropped += 1
            stats.slow_dropped += 1
            if stats.slow_dropped in (1, 50, 500) or stats.slow_dropped % 5000 == 0:
                self._log("upstream_slow", "warning", frames_dropped=stats.frames_dropped)

    def _log(self, event: str, level: str = "info", **fields: Any) -> None:
        self._out.effects.append(Log(event, fields, level))

    # Upstream session ------------------------------------------------------------------------

    def upstream_opened(self, now: float) -> None:
        """The Realtime socket is open: configure the session, then send the caller's backlog."""
        self._upstream_up = True
        self._session_started = now
        self._out.control.append(self.dialect.session_update(self.session))
        self._update_sent_at = now
        self._heard_at = now
        self._release_backlog()

    def _release_backlog(self) -> None:
        if self._backlog:
            self._out.audio[:0] = self._backlog
            self._backlog.clear()

    # Twilio side -----------------------------------------------------------------------------

    def on_twilio(self, event: tw.TwilioEvent, now: float) -> None:
        """A Twilio message. The adapter hands most media and marks to `on_media` and
        `on_mark` as their fields (`tw.feed`); these come here as events too."""
        if isinstance(event, tw.Media):
            if event.stream_sid != self.stream_sid:
                raise tw.StreamProtocolError("media for another streamSid")
            if event.track in _INBOUND_TRACKS:
                self.on_media(event.stream_sid, event.payload, event.timestamp, now)
        elif isinstance(event, tw.Mark):
            self.on_mark(event.stream_sid, event.name, now)
        elif isinstance(event, tw.Dtmf):
            self._on_dtmf(event.digit, now)
        elif isinstance(event, tw.Stop):
            self.end("caller_hangup")
        elif isinstance(event, tw.Unknown):
            self._log("twilio_event_ignored", "warning", twilio_event=event.event)

    def twilio_rejected(self, reason: str) -> None:
        """A message from Twilio's side that breaks the protocol; too many end the call."""
        self.protocol_errors += 1
        self._log("twilio_message_rejected", "warning", error=reason, count=self.protocol_errors)
        if self.protocol_errors >= self.rules.max_protocol_errors:
            self.end("protocol_error")

    def twilio_closed(self, *, too_big: bool) -> None:
        """Twilio's socket is gone: the caller hung up, or it sent more than the size cap."""
        if too_big and not self.ended:
            self._log("twilio_message_rejected", "warning", error="message exceeds the size cap")
            self.end("protocol_error")
        self.end("caller_hangup")

    def on_media(self, stream_sid: str, payload: str, timestamp: object, now: float) -> None:
        """20 ms of the caller (inbound track): converted, and appended upstream."""
        if stream_sid != self.stream_sid:
            raise tw.StreamProtocolError("media for another streamSid")
        self.stats.frames_in += 1
        if self._recorder is not None:
            self._recorder.caller(payload, now, timestamp)
        message = self._append(self._inbound(payload))
        if self._upstream_up:
            self._out.audio.append(message)
        else:
            if len(self._backlog) >= BACKLOG_FRAMES:
                self._backlog.pop(0)
                self.stats.frames_dropped += 1
                self.stats.backlog_dropped += 1
            self._backlog.append(message)

    def on_mark(self, stream_sid: str, name: str, now: float) -> None:
        """Twilio played the audio before mark `name` (or dropped it at a `clear`)."""
        if stream_sid != self.stream_sid:
            raise tw.StreamProtocolError("mark for another streamSid")
        item = self._mark_echoed(name, now)
        if item is None:
            return
        self.last_activity = now
        if self._recorder is not None:
            self._recorder.agent_played(name, now)
        if item.audio_done and self.playback.item_finished(item):
            self._agent_item_final(item, item.played_ms, interrupted=False, now=now)
            self._on_quiet(now)

    # Upstream side ---------------------------------------------------------------------------

    def on_upstream(self, event: ev.ServerEvent, now: float) -> None:
        """A Realtime server event. The adapter hands most audio deltas to `on_delta` as
        their fields (`Dialect.feed`); they come here as events too."""
        self._heard_at = now
        # Ordered by frequency: deltas are most of the traffic.
        if isinstance(event, ev.AudioDelta):
            self.on_delta(event.response_id, event.item_id, event.delta, now)
        elif isinstance(event, ev.SpeechStarted):
            self.last_activity = self.last_caller_speech = now
            self._on_speech_started(now)
        elif isinstance(event, ev.SpeechStopped):
            self.last_activity = self.last_caller_speech = now
            self._speech_stopped_at = now
        elif isinstance(event, ev.AudioDone):
            self._on_audio_done(event, now)
        elif isinstance(event, ev.OutputItemAdded):
            if event.type == "message" and event.response_id not in self._interrupted:
                self.transcript.add(event.item_id, "agent", now)
            elif event.type == "function_call" and event.name:
                self._function_names[event.item_id] = event.name
        elif isinstance(event, ev.InputCommitted):
            self.stats.turns += 1
            if self.session.transcription_model:
                self.transcript.add(event.item_id, "caller", now)
        elif isinstance(event, ev.InputTranscript):
            self._log_lines(self.transcript.caller_text(event.item_id, event.text, now))
        elif isinstance(event, ev.InputTranscriptFailed):
            self._log(
                "transcription_failed", "warning", item_id=event.item_id, message=event.message
            )
            self._log_lines(self.transcript.caller_text(event.item_id, "", now, failed=True))
        elif isinstance(event, ev.TranscriptDelta):
            self.transcript.agent_delta(event.item_id, event.delta)
        elif isinstance(event, ev.TranscriptDone):
            self.transcript.agent_text(event.item_id, event.transcript)
        elif isinstance(event, ev.ResponseCreated):
            self._active_response = event.response_id
            if self._response_requested:  # ours: it answers what it was asked for
                self._asked.clear()
            self._response_requested = False
        elif isinstance(event, ev.FunctionCall):
            self._on_function_call(event)
        elif isinstance(event, ev.ResponseDone):
            self._on_response_done(event, now)
        elif isinstance(event, ev.SessionUpdated):
            self._update_sent_at = None
            if not self._greeted and not self._awaiting_detection:
                self._greeted = True
                self._request_response(self._greeting_instructions())
        elif isinstance(event, ev.UpstreamError):
            self._on_error(event)
        elif isinstance(event, ev.IdleTimeout):
            if self.rules.server_idle:
                self._on_server_idle(now)
        elif isinstance(event, ev.RateLimits):
            for limit in event.limits:
                self._out.effects.append(
                    Measure(f"rate_limit_remaining:{limit.name}", limit.remaining)
                )

    def _on_server_idle(self, now: float) -> None:
        """The server's idle timeout: its first prompt is this call's reprompt; a second with
        the caller still silent is the idle end (the goodbye, then the hang-up), as the
        bridge's own timer would have decided."""
        limits = self._limits
        silent_since_prompt = (
            limits.reprompted_at is not None
            and (self.last_caller_speech or 0) <= limits.reprompted_at
        )
        if limits.done or self._handoff is not None:
            return
        if not silent_since_prompt:
            self._log("call_limit", limit="idle_timeout_ms", seconds=self.rules.idle_s)
            limits.reprompted(now)
            self.last_activity = now
            return
        limits.done = True
        self._log("call_limit", limit="idle_seconds", seconds=self.rules.idle_s)
        self.begin_handoff(
            Handoff(kind="hangup", line=self.rules.idle_goodbye, reason="idle", origin="limit"),
            now,
        )

    def upstream_pong(self, now: float) -> None:
        """The upstream answered a ping: its socket is alive, whatever the model is doing."""
        self._heard_at = now
        self._pinged = False

    def _check_frozen(self, now: float) -> None:
        """Silent while a response or an acknowledgement is expected: ping it, then, if it
        still says nothing, cut it and take the reconnect path (a frozen socket is otherwise
        a dead call until TCP gives up, 40 s later)."""
        if not self._upstream_up or not (self.response_active or self._update_sent_at):
            self._pinged = False
            return
        silent = now - self._heard_at
        if silent >= self.rules.upstream_frozen_s and self._pinged:
            self._log("upstream_frozen", "warning", silent_ms=round(silent * 1000.0))
            self._pinged = False
            self._out.effects.append(DropUpstream())
        elif silent >= self.rules.upstream_ping_after_s and not self._pinged:
            self._pinged = True
            self._out.effects.append(PingUpstream())

    def upstream_rejected(self, reason: str) -> None:
        """A message from the upstream that the dialect could not read."""
        self._log("upstream_message_rejected", "warning", error=reason)

    # Answering-machine detection (calls the bridge placed) ------------------------------------

    @property
    def _awaiting_detection(self) -> bool:
        return self._detection is not None and not self._detection.decided

    @property
    def awaiting_detection(self) -> bool:
        """A call the bridge placed that still waits for Twilio's `AnsweredBy`."""
        return self._awaiting_detection

    def answered_by(self, kind: str, now: float) -> None:
        """Twilio's `AnsweredBy` for this call (`bridge.call.detection`): a person hears the
        greeting; a machine, after its beep, the voicemail and then the hang-up."""
        detection = self._detection
        if detection is None or detection.decided or self.ended:
            self._log("answered_by", answered_by=kind, then="ignore")
            return
        action = answer_for(kind, detection.voicemail is not None)
        self._log("answered_by", answered_by=kind, then=action)
        if action == "wait":
            return
        detection.decided = True
        if action == "greet":
            self._greet_after_detection(now)
        elif action == "voicemail" and detection.voicemail is not None:
            line = detection.voicemail
            self.begin_handoff(
                Handoff(kind="hangup", line=line, reason="voicemail", origin="limit"), now
            )
        else:
            self.end("machine")

    def _greet_after_detection(self, now: float) -> None:
        """Back to the persona's turn detection, then the greeting once it is confirmed
        (`session.updated`); a session not open yet is opened with it."""
        self.session = self._session_wanted
        if self._upstream_up and self._reconnect is None:
            self._out.control.append(self.dialect.session_update(self.session))
            self._update_sent_at = now

    def _greeting_instructions(self) -> str | None:
        if self.opening:
            return self.opening
        if not self.greeting:
            return None
        return (
            "The call has just been answered. Greet the caller by saying exactly this, "
            f'and nothing else: "{self.greeting}"'
        )

    def on_delta(self, response_id: str, item_id: str, audio: str, now: float) -> None:
        """Agent audio (base64) of an item: framed to 20 ms, each frame with its mark."""
        self._heard_at = now
        if response_id in self._interrupted:
            self.stats.deltas_dropped += 1
            return
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = ItemPlayback(item_id, response_id)
            self.transcript.add(item_id, "agent", now)
        size = len(audio)  # its decoded bytes, counted without decoding (padding aside)
        if size:
            item.audio_ms += (size * 3 // 4 - audio.count("=", size - 2)) / self._bytes_per_ms
        self._send_frames(item, self._outbound(audio), now)

    def _on_audio_done(self, done: ev.AudioDone, now: float) -> None:
        item = self.items.get(done.item_id)
        if item is None or item.interrupted or done.response_id in self._interrupted:
            return
        self._send_frames(item, self.audio.flush(), now)
        item.audio_done = True
        if self.playback.item_finished(item):
            self._agent_item_final(item, item.played_ms, interrupted=False, now=now)

    def _send_frames(self, item: ItemPlayback, frames: list[str], now: float) -> None:
        if not frames:
            return
        append = self._out.twilio.append
        media_head, mark_head = self._media_head, self._mark_head
        frame_sent = self._frame_sent
        recorder = self._recorder
        if recorder is None:  # the common case: one test per delta, not per frame
            for frame in frames:
                append(media_head + frame + _TAIL)
                append(mark_head + frame_sent(item, now) + _TAIL)
        else:
            for frame in frames:
                append(media_head + frame + _TAIL)
                mark = frame_sent(item, now)
                append(mark_head + mark + _TAIL)
                recorder.agent_sent(mark, frame)
        self.stats.frames_out += len(frames)
        if self._speech_stopped_at is not None:
            self._out.effects.append(Measure("turn_latency", now - self._speech_stopped_at))
            self._speech_stopped_at = None

    def _on_speech_started(self, now: float) -> None:
        """Barge-in. The order of the outbox is the order on the wire: clear goes first."""
        affected: list[ItemPlayback] = []
        heard = 0
        cleared = self.playback.playing
        out = self._out
        if cleared:
            out.twilio.append(tw.clear_message(self.stream_sid))
            out.urgent = True
            affected = self.playback.pending_items()
            heard = self.playback.heard_ms(affected[0], now)
            self.playback.clear()
            self.audio.reset_outbound()
            if self._recorder is not None:
                self._recorder.agent_cleared()
        active = self._active_response
        if active is not None and active not in self._interrupted:
            # Audio of the active response not yet framed or sent: the caller heard none of it.
            for item in self.items.values():
                if item.response_id == active and not item.interrupted and item not in affected:
                    if item.audio_ms >= 1:
                        affected.append(item)
            self._interrupted.add(active)
            self.audio.reset_outbound()
            if not self.session.turn_detection.interrupt_response:
                out.control.append(self.dialect.cancel_response())
        for index, item in enumerate(affected):
            played = heard if index == 0 else 0
            played = min(played, int(item.audio_ms))
            item.interrupted = True
            item.heard_ms = played
            self._interrupted.add(item.response_id)
            out.control.append(self.dialect.truncate(item.item_id, played))
            self._agent_item_final(item, played, interrupted=True, now=now)
        if cleared:
            self.stats.barge_ins += 1
            out.effects.append(BargeIn(affected[0].item_id, heard))

    def _on_response_done(self, done: ev.ResponseDone, now: float) -> None:
        if self._active_response == done.response_id:
            self._active_response = None
        self._run_calls(done)
        for item in self.items.values():
            if (
                item.response_id == done.response_id
                and not item.audio_done
                and not item.interrupted
            ):
                # Cut short (cancelled, incomplete, failed) without an audio.done.
                self._send_frames(item, self.audio.flush(), now)
                item.audio_done = True
                if self.playback.item_finished(item):
                    self._agent_item_final(item, item.played_ms, interrupted=False, now=now)
        if done.status == "failed":
            # Quota, rate limits, a server fault: say why the agent went silent.
            self._log(
                "response_failed",
                "warning",
                response_id=done.response_id,
                reason=done.reason,
                error_type=done.error_type,
                error_code=done.error_code,
                error_message=done.error_message,
            )
        batch = self._tool_batches.get(done.response_id)
        if batch is not None:
            batch.response_done = True
            self._answer_tools(done.response_id)
        self._maybe_create_response()
        self._on_quiet(now)

    def _on_error(self, error: ev.UpstreamError) -> None:
        if self._update_sent_at is not None and error.code not in BENIGN_ERRORS:
            # The service refuses a session.update with an error and no session.updated,
            # keeping its defaults: a call with the wrong voice, format or tools.
            self._session_rejected(error.code, error.message)
            return
        refused = self.dialect.item_created_by(error.event_id)
        if refused is not None:
            # An item of ours the service would not take: nothing is owed for it.
            self._owed.discard(refused)
            self._asked.discard(refused)
            self._log(
                "item_refused", "warning", item_id=refused, code=error.code, message=error.message
            )
            return
        level = "info" if error.code in BENIGN_ERRORS else "warning"
        self._log(
            "upstream_error", level, code=error.code, error_type=error.type, message=error.message
        )
        if error.code == "conversation_already_has_active_response":
            # Our create did not happen: what it was for is asked again after the active one.
            self._response_requested = False
            self._owed |= self._asked
            self._asked.clear()

    # Tools -----------------------------------------------------------------------------------

    def _on_function_call(self, call: ev.FunctionCall) -> None:
        """A call's arguments are complete, or as complete as they will get: the service
        sends this for cancelled and incomplete responses too, so nothing runs before the
        response is done (`_run_calls`)."""
        if not call.name and call.item_id in self._function_names:
            call = replace(call, name=self._function_names[call.item_id])
        self._calls_written.setdefault(call.response_id, {})[call.call_id] = call

    def _run_calls(self, done: ev.ResponseDone) -> None:
        """A response is done: its function calls run only if it completed, and each only if
        its item completed (truncated arguments are never executed)."""
        written = self._calls_written.pop(done.response_id, {})
        for call in done.function_calls:  # the final word on each item's status
            if not call.name and call.item_id in self._function_names:
                call = replace(call, name=self._function_names[call.item_id])
            written[call.call_id] = call
        for call in written.values():
            if done.status != "completed" or call.status not in (None, "completed"):
                self._log(
                    "tool_call_dropped",
                    name=call.name,
                    response_status=done.status,
                    item_status=call.status,
                )
                continue
            batch = self._tool_batches.setdefault(call.response_id, _ToolBatch())
            if call.call_id in batch.calls:
                continue
            batch.calls[call.call_id] = call
            self._out.effects.append(RunTool(call))

    def tool_slow(self, call: ev.FunctionCall, filler: str, now: float) -> None:
        """A tool is still running after the filler delay: its filler line is spoken, once,
        and only while the model is silent and no handoff is under way."""
        if self.ended or self._handoff is not None:
            return
        if self.say(speak_exactly(filler)):
            self._log("tool_filler", name=call.name)

    def tool_finished(
        self,
        call: ev.FunctionCall,
        arguments: dict[str, Any] | None,
        result: ToolResult,
        duration_ms: float,
        now: float,
    ) -> None:
        """A tool finished (or failed: its output then says so, for the model to talk about).

        A result that asks for call control while another handoff is under way is refused.
        With `respond=False` the output is recorded without asking the model for a new
        response (unless another call of the same response wants one): call-control tools
        have the bridge say the last words, and an answer from the model would talk over them.
        """
        if result.handoff is not None and self._handoff is not None:
            result = ToolResult.failure("the call is already being ended", respond=False)
        self._log_tool(call, arguments, result.ok, result.error, duration_ms)
        if self.ended:
            return
        batch = self._tool_batches.get(call.response_id)
        if batch is None or call.call_id not in batch.calls:
            return
        batch.results[call.call_id] = result.output
        batch.respond = batch.respond or result.respond
        self._answer_tools(call.response_id)
        if result.handoff is not None:
            self.begin_handoff(result.handoff, now)
        self._on_quiet(now)

    def tool_cancelled(
        self, call: ev.FunctionCall, arguments: dict[str, Any] | None, duration_ms: float
    ) -> None:
        """A tool was still running when the call ended; its result has nowhere to go."""
        self._log_tool(call, arguments, False, "the call ended first", duration_ms, "info")

    def _log_tool(
        self,
        call: ev.FunctionCall,
        arguments: dict[str, Any] | None,
        ok: bool,
        error: str | None,
        duration_ms: float,
        level: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "name": call.name,
            "arguments": arguments if arguments is not None else call.arguments,
            "ok": ok,
            "duration_ms": round(duration_ms, 1),
        }
        if error:
            fields["error"] = error
        self._out.effects.append(Log("tool_call", fields, level or ("info" if ok else "warning")))

    def _answer_tools(self, response_id: str) -> None:
        batch = self._tool_batches[response_id]
        if not batch.response_done or len(batch.results) < len(batch.calls):
            return
        del self._tool_batches[response_id]
        for call_id in batch.calls:
            item_id = self._new_item_id()
            self._out.control.append(
                self.dialect.function_output(call_id, batch.results[call_id], item_id)
            )
            if batch.respond:
                self._owed.add(item_id)
        self._maybe_create_response()

    def _new_item_id(self) -> str:
        self._item_seq += 1
        return f"vb_{self.call_sid[-12:]}_{self._item_seq}"

    def _maybe_create_response(self) -> None:
        # One response at a time: what we owe is asked for once the active one is done.
        if self._owed and not self.response_active:
            self._request_response(None)

    def _request_response(self, instructions: str | None) -> None:
        if self.response_active:
            return
        self._response_requested = True
        self._requested_instructions = instructions
        self._asked |= self._owed
        self._owed.clear()
        self._out.control.append(self.dialect.create_response(instructions))

    def say(self, instructions: str) -> bool:
        """Ask the model to speak now (reprompts, goodbyes). False if a response is under way."""
        if self._active_response is not None or self._response_requested:
            return False
        self._request_response(instructions)
        return True

    def send_user_text(self, text: str) -> None:
        """A user message in text that the model should answer (DTMF digits reach it so)."""
        item_id = self._new_item_id()
        self._out.control.append(self.dialect.user_text(text, item_id))
        self._owed.add(item_id)
        self._maybe_create_response()

    # The keypad ------------------------------------------------------------------------------

    def _on_dtmf(self, digit: str, now: float) -> None:
        if self.ended or self._keypad is None:
            self._log("dtmf", digit=digit, action="ignore")
            return
        if self._handoff is not None:
            self._log("dtmf", digit=digit, action="ignore", reason="the call is ending")
            return
        outcome = self._keypad(digit)
        if outcome is None:
            self._log("dtmf", digit=digit, action="ignore")
        elif isinstance(outcome, ToModel):
            self._log("dtmf", digit=digit, action="to_model")
            self.send_user_text(outcome.text)
        elif isinstance(outcome, SayLine):
            self._log("dtmf", digit=digit, action="say")
            self._say_when_silent(outcome.text)
        else:
            self._log("dtmf", digit=digit, action=outcome.kind, target=outcome.target)
            self.begin_handoff(outcome, now)

    def _say_when_silent(self, text: str) -> None:
        if self.say(speak_exactly(text)):
            self._deferred_line = None
        else:
            self._deferred_line = text  # said once the agent is quiet; a newer press wins

    # Call control ----------------------------------------------------------------------------

    @property
    def handoff(self) -> HandoffProgress | None:
        return self._handoff

    def begin_handoff(self, handoff: Handoff, now: float) -> None:
        """Say the handoff's line, let it play out, then carry it out. Ignored while another
        handoff is under way or the call is ending."""
        if self.ended or self._handoff is not None:
            return
        self._handoff = HandoffProgress(handoff, now)
        self._deferred_line = None
        self._log(
            "handoff_started", kind=handoff.kind, target=handoff.target, origin=handoff.origin
        )
        self._advance_handoff(now)

    def _advance_handoff(self, now: float) -> None:
        progress = self._handoff
        if progress is None or progress.stage == "acting":
            return
        if progress.stage == "waiting":
            items = frozenset(self.items)
            if self.say(speak_exactly(progress.handoff.line)):
                progress.stage = "speaking"
                progress.items_before = items
            return
        # Speaking: act only once the caller has heard the line to the end.
        if not self.idle:
            return
        if progress.cancellable and self._line_interrupted(progress):
            self._log("handoff_cancelled", kind=progress.handoff.kind, reason="caller spoke")
            self._handoff = None
            return
        self._act(progress)

    def _line_interrupted(self, progress: HandoffProgress) -> bool:
        return any(
            item.interrupted
            for item_id, item in self.items.items()
            if item_id not in progress.items_before
        )

    def _act(self, progress: HandoffProgress) -> None:
        progress.stage = "acting"
        self._handoff_reason = progress.handoff.reason
        self._out.effects.append(CarryOut(progress.handoff))

    def handoff_result(self, outcome: ControlOutcome | None, now: float) -> None:
        """How carrying out the handoff went: `None` when there was no Twilio account to ask.
        Either way the stream ends now; when REST did not do it, Twilio's request for the
        `<Connect>` action gets the transfer's `<Dial>` or a `<Hangup/>` (`after_stream`)."""
        progress = self._handoff
        if progress is None or progress.stage != "acting":
            return
        handoff = progress.handoff
        if outcome is None:
            self._log("call_control", action=handoff.kind, ok=True, via="connect_action")
            self.end(handoff.reason)
            return
        fields: dict[str, Any] = {
            "action": handoff.kind,
            "ok": outcome.ok,
            "http_status": outcome.http_status,
            "duration_ms": outcome.duration_ms,
        }
        if handoff.target:
            fields["target"] = handoff.target
        if outcome.code is not None:
            fields["code"] = outcome.code
        if outcome.error:
            fields["error"] = outcome.error
        if not outcome.ok:
            # Twilio REST failed (429, 5xx, a timeout): the stream's end does it instead, as
            # the `<Connect>` action's answer (a `<Dial>`, or `<Hangup/>`).
            fields["then"] = "connect_action"
        self._log("call_control", "info" if outcome.ok else "warning", **fields)
        self.end(handoff.reason)

    def _session_rejected(self, code: str | None, message: str) -> None:
        self._log("session_rejected", "error", code=code, message=message)
        self.end("session_rejected")

    # Time: limits, idleness, renewal, the handoff's watchdog ---------------------------------

    def tick(self, now: float) -> None:
        """The timers' moment (every half second): what is due is done now."""
        if self.ended:
            return
        sent = self._update_sent_at
        heard_lately = now - self._heard_at < self.rules.upstream_frozen_s
        if sent is not None and now - sent >= self.rules.session_confirm_s and heard_lately:
            # It talks but does not confirm (a silent one is frozen, and replaced, instead).
            self._session_rejected(
                None, f"no session.updated within {self.rules.session_confirm_s:g} s"
            )
            return
        self._check_frozen(now)
        detection = self._detection
        if detection is not None and not detection.decided:
            self.last_activity = now  # quiet on purpose: not idle until someone may speak
            if now >= detection.deadline:
                self.answered_by("unknown", now)  # no result from Twilio: greet, not silence
        progress = self._handoff
        if progress is not None and progress.overdue(now, self.rules.handoff_max_wait_s):
            self._log(
                "handoff_forced",
                "warning",
                kind=progress.handoff.kind,
                stage=progress.stage,
                waited_s=round(now - progress.started, 1),
            )
            self._act(progress)
        # Never during a goodbye or a handoff's line: the new session would not know it.
        renewable = self.phase is Phase.LIVE and not self._renewing and self._handoff is None
        decision = self._limits.check(
            now,
            idle=self.idle,
            last_activity=self.last_activity,
            last_caller_speech=self.last_caller_speech,
            session_age_s=now - self._session_started if renewable else None,
        )
        if isinstance(decision, EndForLimit):
            self._log("call_limit", limit=decision.limit, seconds=decision.seconds)
            self.begin_handoff(
                Handoff(kind="hangup", line=decision.line, reason=decision.reason, origin="limit"),
                now,
            )
        elif isinstance(decision, Renew):
            # Move to a fresh session while nobody is speaking; the reconnect path does it.
            self._log("session_renewal", session_age_s=round(decision.session_age_s))
            self._renewing = True
            self._out.effects.append(RenewSession())
        elif isinstance(decision, Reprompt):
            self._log("call_limit", limit="idle_reprompt", seconds=decision.seconds)
            if self.say(speak_exactly(decision.line)):
                self._limits.reprompted(now)
                self.last_activity = now

    # Bookkeeping -----------------------------------------------------------------------------

    @property
    def response_active(self) -> bool:
        return self._active_response is not None or self._response_requested

    def _agent_item_final(
        self, item: ItemPlayback, played_ms: int, interrupted: bool, now: float
    ) -> None:
        """The item's line is final: with the words the caller heard when it was cut short
        (a barge-in, a hang-up mid-sentence), all of them when it played out."""
        audio_ms = item.audio_ms

        def heard(text: str) -> str:
            return heard_part(text, played_ms, audio_ms)

        cut = heard if played_ms < audio_ms else None
        lines = self.transcript.agent_final(item.item_id, played_ms, interrupted, now, cut)
        self._log_lines(lines)

    @property
    def idle(self) -> bool:
        """Nothing is playing, no response is under way and no tool result is awaited: the
        moment call control may act (the caller has heard every word)."""
        return not self.playback.playing and not self.response_active and not self._tool_batches

    def _on_quiet(self, now: float) -> None:
        """Whatever waited for the agent to be quiet goes on: a handoff, a keypad line."""
        if self.ended or not self.idle:
            return
        if self._handoff is not None:
            self._advance_handoff(now)
        elif self._deferred_line is not None:
            self._say_when_silent(self._deferred_line)

    def _log_lines(self, lines: list[dict[str, Any]]) -> None:
        for line in lines:
            self._out.effects.append(TranscriptLine(line))
            if line.get("late"):
                continue
            text = line.get("text") or ""  # an agent line holds what the caller heard already
            if text:
                self.history.append((line["role"], text))

    # Losing and replacing the upstream session ----------------------------------------------

    def upstream_lost(self, now: float) -> None:
        """The Realtime socket is gone mid-call. What the caller already has keeps playing;
        everything tied to the old session (the response under way, pending tool calls,
        items owed a response) is let go, and a new session is asked for."""
        if not self._upstream_up or self.ended:
            return
        self._upstream_up = False
        renewal, self._renewing = self._renewing, False
        rules = self.rules
        self._reconnect = ReconnectPlan(
            now, rules.reconnect_window_s, rules.reconnect_pause_s, renewal=renewal
        )
        self._continue_after_reconnect = self._active_response is not None
        if self._active_response is None and self._response_requested:
            self._ask_again = True
        for item in self.items.values():
            if not item.audio_done and not item.interrupted:
                self._send_frames(item, self.audio.flush(), now)
                item.audio_done = True
                if self.playback.item_finished(item):
                    self._agent_item_final(item, item.played_ms, interrupted=False, now=now)
        self.audio.reset_outbound()
        if self._active_response is not None:
            self._interrupted.add(self._active_response)
        self._active_response = None
        self._response_requested = False
        self._tool_batches.clear()
        self._calls_written.clear()
        self._owed.clear()
        self._asked.clear()
        out = self._out
        if out.audio:  # caller audio not yet sent waits for the new session
            self._backlog[:0] = out.audio
            out.audio.clear()
            excess = len(self._backlog) - BACKLOG_FRAMES
            if excess > 0:
                del self._backlog[:excess]
                self.stats.frames_dropped += excess
                self.stats.backlog_dropped += excess
        if not renewal:
            self._log("upstream_lost", "warning")
        out.effects.append(Reconnect())

    def reconnect_step(self, now: float) -> ReconnectStep:
        """What the reconnect loop does next; giving up ends the call as `upstream_failed`."""
        plan = self._reconnect
        if plan is None or self.ended:
            return GiveUp(plan.attempts if plan else 0)
        step = plan.step(now)
        if isinstance(step, GiveUp):
            self._log(
                "upstream_reconnect_gave_up",
                "error",
                attempts=step.attempts,
                window_s=plan.window_s,
            )
            self.end("upstream_failed")
        return step

    def reconnect_failed(self, error: str) -> None:
        plan = self._reconnect
        if plan is None:
            return
        self._log("upstream_reconnect_failed", "warning", attempt=plan.attempts, error=error)
        plan.failed()

    def upstream_reopened(self, now: float) -> None:
        """A new session replaces the lost one: configure it as before, replay the
        conversation so far as text items (what the caller heard, in order), then go on: an
        answer that was cut off is continued, and the caller's buffered audio follows."""
        plan = self._reconnect
        if plan is None:
            return
        self._reconnect = None
        self._upstream_up = True
        self._session_started = now
        self._heard_at = now
        self._pinged = False
        replay = [self.dialect.session_update(self.session)]
        pending = [(e.role, e.text) for e in self.transcript.pending() if e.text]
        for role, text in (*self.history, *pending):
            item_id = self._new_item_id()
            if role == "caller":
                replay.append(self.dialect.user_text(text, item_id))
            else:
                replay.append(self.dialect.assistant_text(text, item_id))
        out = self._out
        out.control[:0] = replay
        self._update_sent_at = now
        self._release_backlog()
        self._log(
            "upstream_reconnected",
            attempt=plan.attempts,
            renewal=plan.renewal,
            gap_ms=round((now - plan.lost_at) * 1000.0, 1),
            replayed_items=len(self.history),
        )
        ask_again, self._ask_again = self._ask_again, False
        if ask_again:
            self._request_response(self._requested_instructions)
        elif self._continue_after_reconnect:
            self._continue_after_reconnect = False
            self._request_response(CONTINUE_INSTRUCTIONS)

    # The end ---------------------------------------------------------------------------------

    def end(self, reason: str) -> None:
        """End the call (a hang-up, a limit, call control, a fault, shutdown): the first reason
        given is kept; the adapter then tears everything down and calls `finish`."""
        if self._end_reason is not None or self._finished:
            return
        self._end_reason = reason
        self._out.effects.append(End(reason))

    def failed(self, error: str) -> None:
        """Handling a message raised: log it and end the call, not the process."""
        self._log("call_failed", "error", error=error)
        self.end("error")

    def finish(self, now: float, reason: str | None = None) -> None:
        """The call is over: release the rest of the transcript and log `call_ended`.
        `reason` is used when no reason to end was given before (`end`)."""
        if self._finished:
            return
        if self._end_reason is None:
            self._end_reason = reason or "error"
        self._finished = True
        for item in self.items.values():
            if not item.interrupted and not self.playback.item_finished(item):
                self._agent_item_final(item, item.played_ms, interrupted=False, now=now)
        self._log_lines(self.transcript.drain())
        self._log(
            "call_ended",
            reason=self.end_reason,
            duration_s=round(now - self.started_at, 3),
            turns=self.stats.turns,
            barge_ins=self.stats.barge_ins,
            frames_in=self.stats.frames_in,
            frames_out=self.stats.frames_out,
            frames_dropped=self.stats.frames_dropped,
        )


def heard_part(text: str, played_ms: float, audio_ms: float) -> str:
    """The words of an interrupted line the caller heard, by the share of its audio played
    (the transcript has no word timings; proportion is right within a word or two)."""
    if audio_ms <= 0 or played_ms >= audio_ms:
        return text
    words = text.split()
    return " ".join(words[: round(len(words) * played_ms / audio_ms)])
