"""One phone call's life, as a state machine with no I/O.

The adapter (`stream.py`) feeds it Twilio messages, upstream Realtime events and tool
results, each with the monotonic time `now`; after every call it drains three outboxes:
`twilio_out` (JSON text for Twilio, always sent first: a `clear` must never wait behind
anything slow), `upstream_out` (JSON text for the Realtime session) and `effects` (log
lines, tool runs, the end of the call). Tests drive it with plain lists of events.

The rules it keeps:
- inbound audio is converted and appended upstream frame by frame (20 ms, no batching: the
  server's VAD sees speech as early as possible);
- outbound audio is framed to 20 ms with a mark after each frame, so the playback clock
  knows what the caller heard at 20 ms resolution;
- barge-in (architecture.md, "Barge-in, the whole of it"): on speech start while the caller
  hears the agent, `clear` first, then truncate each affected item at what was heard, cancel
  only when the server won't, and drop every late delta of the interrupted response;
- at most one response at a time: `response.create` is only sent when none is active or
  requested; the function calls of one response are answered together, then one create;
- the transcript is logged in conversation order, agent lines once their audio has played.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bridge import twilio_stream as tw
from bridge.playback import ItemPlayback, PlaybackClock
from bridge.realtime import events as ev
from bridge.realtime.dialect import Dialect
from bridge.transcript import Transcript

if TYPE_CHECKING:
    from bridge.audio.pipeline import AudioPipeline

# Caller audio that arrives while the upstream session is still opening is kept, up to this
# much, and sent once it is open; older frames are dropped (and counted) beyond it.
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


@dataclass(frozen=True, slots=True)
class Log:
    """A structured log line for this call (`event` as in interface.md)."""

    event: str
    fields: dict[str, Any]
    level: str = "info"


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The caller interrupted the agent; the adapter logs it with the measured reaction time."""

    item_id: str
    played_ms: int


@dataclass(frozen=True, slots=True)
class RunTool:
    call: ev.FunctionCall


@dataclass(frozen=True, slots=True)
class Dtmf:
    """The caller pressed a key; the persona's menu decides what it means."""

    digit: str


@dataclass(frozen=True, slots=True)
class PlaybackIdle:
    """Everything the agent said has played out and no response is under way."""


@dataclass(frozen=True, slots=True)
class End:
    reason: str


@dataclass(frozen=True, slots=True)
class Measure:
    """A number for the metrics: `turn_latency` (caller stopped → first agent frame, s)."""

    name: str
    value: float


Effect = Log | BargeIn | RunTool | Dtmf | PlaybackIdle | End | Measure


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
    backlog_dropped: int = 0  # of those, dropped while the upstream was still opening
    deltas_dropped: int = 0  # agent audio of interrupted responses, never played


class Call:
    """The state of one call between Twilio and one Realtime session."""

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
    ) -> None:
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self._media_head = tw.media_head(stream_sid)  # each frame's messages are one concat
        self._mark_head = tw.mark_head(stream_sid)
        self.dialect = dialect
        self.audio = audio
        self.session = session
        self.greeting = greeting
        self.started_at = started_at

        self.twilio_out: list[str] = []
        self.upstream_out: list[str] = []
        self.effects: list[Effect] = []

        self.stats = CallStats()
        self.playback = PlaybackClock()
        self.transcript = Transcript()
        self.items: dict[str, ItemPlayback] = {}
        self.ended = False

        self._upstream_open = False
        self._backlog: list[str] = []
        self._greeted = False
        self._active_response: str | None = None
        self._response_requested = False
        self._interrupted: set[str] = set()
        self._tool_batches: dict[str, _ToolBatch] = {}
        # Items we created (function outputs, user text) that no response has seen yet, and
        # those of them the server has confirmed into the conversation. A response created
        # after the confirmation has seen them; anything left owes a `response.create`.
        self._owed: set[str] = set()
        self._owed_added: set[str] = set()
        self._item_seq = 0
        self._speech_stopped_at: float | None = None
        self._continue_after_reconnect = False
        # The conversation as the caller experienced it, for replay into a new session.
        self.history: list[tuple[str, str]] = []
        # Last sign of life from either side (speech, agent audio, playback); the idle limit.
        self.last_activity = started_at
        self.last_caller_speech: float | None = None
        self._function_names: dict[str, str] = {}  # item_id → name (beta omits it later)
        self._bytes_per_ms = audio.upstream_bytes_per_ms

    # Upstream session ------------------------------------------------------------------------

    def upstream_opened(self, now: float) -> None:
        """The Realtime socket is open: configure the session, then send the caller's backlog."""
        self._upstream_open = True
        self.upstream_out.append(self.dialect.session_update(self.session))
        self.upstream_out.extend(self._backlog)
        self._backlog.clear()

    # Twilio side -----------------------------------------------------------------------------

    def on_twilio(self, event: tw.TwilioEvent, now: float) -> None:
        if isinstance(event, tw.Media):
            self._on_media(event)
        elif isinstance(event, tw.Mark):
            if event.stream_sid != self.stream_sid:
                raise tw.StreamProtocolError("mark for another streamSid")
            self._on_mark(event.name, now)
        elif isinstance(event, tw.Dtmf):
            self.effects.append(Dtmf(event.digit))
        elif isinstance(event, tw.Stop):
            self.effects.append(End("caller_hangup"))
        elif isinstance(event, tw.Unknown):
            self.effects.append(
                Log("twilio_event_ignored", {"twilio_event": event.event}, "warning")
            )

    def _on_media(self, media: tw.Media) -> None:
        if media.stream_sid != self.stream_sid:
            raise tw.StreamProtocolError("media for another streamSid")
        if media.track not in ("inbound", "inbound_track"):
            return
        self.stats.frames_in += 1
        message = self.dialect.append_audio(self.audio.inbound(media.payload))
        if self._upstream_open:
            self.upstream_out.append(message)
        else:
            if len(self._backlog) >= BACKLOG_FRAMES:
                self._backlog.pop(0)
                self.stats.frames_dropped += 1
                self.stats.backlog_dropped += 1
            self._backlog.append(message)

    def _on_mark(self, name: str, now: float) -> None:
        item = self.playback.mark_echoed(name, now)
        if item is not None:
            self.last_activity = now
        if item is not None and item.audio_done and self.playback.item_finished(item):
            self._agent_item_final(item, item.played_ms, interrupted=False, now=now)
            self._check_idle()

    # Upstream side ---------------------------------------------------------------------------

    def on_upstream(self, event: ev.ServerEvent, now: float) -> None:
        # Ordered by frequency: deltas are most of the traffic.
        if isinstance(event, ev.AudioDelta):
            self._on_delta(event, now)
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
            self.effects.append(
                Log(
                    "transcription_failed",
                    {"item_id": event.item_id, "message": event.message},
                    "warning",
                )
            )
            self._log_lines(self.transcript.caller_text(event.item_id, "", now, failed=True))
        elif isinstance(event, ev.TranscriptDone):
            self.transcript.agent_text(event.item_id, event.transcript)
        elif isinstance(event, ev.ResponseCreated):
            self._active_response = event.response_id
            self._response_requested = False
            self._owed -= self._owed_added
            self._owed_added.clear()
        elif isinstance(event, ev.FunctionCall):
            self._on_function_call(event)
        elif isinstance(event, ev.ResponseDone):
            self._on_response_done(event, now)
        elif isinstance(event, ev.ItemAdded):
            if event.item_id in self._owed:
                self._owed_added.add(event.item_id)
        elif isinstance(event, ev.SessionUpdated):
            if not self._greeted:
                self._greeted = True
                self._request_response(self._greeting_instructions())
        elif isinstance(event, ev.UpstreamError):
            self._on_error(event)

    def _greeting_instructions(self) -> str | None:
        if not self.greeting:
            return None
        return (
            "The call has just been answered. Greet the caller by saying exactly this, "
            f'and nothing else: "{self.greeting}"'
        )

    def _on_delta(self, delta: ev.AudioDelta, now: float) -> None:
        if delta.response_id in self._interrupted:
            self.stats.deltas_dropped += 1
            return
        item = self.items.get(delta.item_id)
        if item is None:
            item = self.items[delta.item_id] = ItemPlayback(delta.item_id, delta.response_id)
            self.transcript.add(delta.item_id, "agent", now)
        item.audio_ms += _b64_len(delta.delta) / self._bytes_per_ms
        self._send_frames(item, self.audio.outbound(delta.delta), now)

    def _on_audio_done(self, done: ev.AudioDone, now: float) -> None:
        item = self.items.get(done.item_id)
        if item is None or item.interrupted or done.response_id in self._interrupted:
            return
        self._send_frames(item, self.audio.flush(), now)
        item.audio_done = True
        if self.playback.item_finished(item):
            self._agent_item_final(item, item.played_ms, interrupted=False, now=now)

    def _send_frames(self, item: ItemPlayback, frames: list[str], now: float) -> None:
        out = self.twilio_out
        media_head, mark_head, tail = self._media_head, self._mark_head, tw.MESSAGE_TAIL
        frame_sent = self.playback.frame_sent
        for frame in frames:
            out.append(media_head + frame + tail)
            out.append(mark_head + frame_sent(item, now) + tail)
        self.stats.frames_out += len(frames)
        if frames and self._speech_stopped_at is not None:
            self.effects.append(Measure("turn_latency", now - self._speech_stopped_at))
            self._speech_stopped_at = None

    def _on_speech_started(self, now: float) -> None:
        """Barge-in. The order of the outboxes is the order on the wire: clear goes first."""
        affected: list[ItemPlayback] = []
        heard = 0
        cleared = self.playback.playing
        if cleared:
            self.twilio_out.append(tw.clear_message(self.stream_sid))
            affected = self.playback.pending_items()
            heard = self.playback.heard_ms(affected[0], now)
            self.playback.clear()
            self.audio.reset_outbound()
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
                self.upstream_out.append(self.dialect.cancel_response())
        for index, item in enumerate(affected):
            played = heard if index == 0 else 0
            played = min(played, int(item.audio_ms))
            item.interrupted = True
            item.heard_ms = played
            self._interrupted.add(item.response_id)
            self.upstream_out.append(self.dialect.truncate(item.item_id, played))
            self._agent_item_final(item, played, interrupted=True, now=now)
        if cleared:
            self.stats.barge_ins += 1
            self.effects.append(BargeIn(affected[0].item_id, heard))

    def _on_response_done(self, done: ev.ResponseDone, now: float) -> None:
        if self._active_response == done.response_id:
            self._active_response = None
        for call in done.function_calls:
            self._on_function_call(call)
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
            self.effects.append(
                Log(
                    "response_failed",
                    {"response_id": done.response_id, "reason": done.reason},
                    "warning",
                )
            )
        batch = self._tool_batches.get(done.response_id)
        if batch is not None:
            batch.response_done = True
            self._answer_tools(done.response_id)
        self._maybe_create_response()
        self._check_idle()

    def _on_error(self, error: ev.UpstreamError) -> None:
        level = "info" if error.code in BENIGN_ERRORS else "warning"
        self.effects.append(
            Log(
                "upstream_error",
                {"code": error.code, "error_type": error.type, "message": error.message},
                level,
            )
        )
        if error.code == "conversation_already_has_active_response":
            self._response_requested = False

    # Tools -----------------------------------------------------------------------------------

    def _on_function_call(self, call: ev.FunctionCall) -> None:
        if not call.name and call.item_id in self._function_names:
            call = replace(call, name=self._function_names[call.item_id])
        batch = self._tool_batches.setdefault(call.response_id, _ToolBatch())
        if call.call_id in batch.calls:
            return
        batch.calls[call.call_id] = call
        self.effects.append(RunTool(call))

    def tool_result(
        self, response_id: str, call_id: str, output: str, now: float, *, respond: bool = True
    ) -> None:
        """A tool finished (or failed: `output` then says so, for the model to talk about).

        With `respond=False` the output is recorded without asking the model for a new
        response (unless another call of the same response wants one): call-control tools
        have the bridge say the last words, and an answer from the model would talk over them.
        """
        if self.ended:
            return
        batch = self._tool_batches.get(response_id)
        if batch is None or call_id not in batch.calls:
            return
        batch.results[call_id] = output
        batch.respond = batch.respond or respond
        self._answer_tools(response_id)
        self._check_idle()

    def _answer_tools(self, response_id: str) -> None:
        batch = self._tool_batches[response_id]
        if not batch.response_done or len(batch.results) < len(batch.calls):
            return
        del self._tool_batches[response_id]
        for call_id in batch.calls:
            item_id = self._new_item_id()
            self.upstream_out.append(
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
        self.upstream_out.append(self.dialect.create_response(instructions))

    def say(self, instructions: str) -> bool:
        """Ask the model to speak now (reprompts, goodbyes). False if a response is under way."""
        if self._active_response is not None or self._response_requested:
            return False
        self._request_response(instructions)
        return True

    def send_user_text(self, text: str) -> None:
        """A user message in text that the model should answer (DTMF digits reach it so)."""
        item_id = self._new_item_id()
        self.upstream_out.append(self.dialect.user_text(text, item_id))
        self._owed.add(item_id)
        self._maybe_create_response()

    # Bookkeeping -----------------------------------------------------------------------------

    @property
    def response_active(self) -> bool:
        return self._active_response is not None or self._response_requested

    def _agent_item_final(
        self, item: ItemPlayback, played_ms: int, interrupted: bool, now: float
    ) -> None:
        self._log_lines(self.transcript.agent_final(item.item_id, played_ms, interrupted, now))

    @property
    def idle(self) -> bool:
        """Nothing is playing, no response is under way and no tool result is awaited: the
        moment call control may act (the caller has heard every word)."""
        return not self.playback.playing and not self.response_active and not self._tool_batches

    def _check_idle(self) -> None:
        if self.idle:
            self.effects.append(PlaybackIdle())

    def _log_lines(self, lines: list[dict[str, Any]]) -> None:
        for line in lines:
            self.effects.append(Log("transcript", line))
            if line.get("late"):
                continue
            text = line.get("text") or ""
            if line["role"] == "agent" and line.get("interrupted"):
                item = self.items.get(line["item_id"])
                text = heard_part(text, line.get("played_ms", 0), item.audio_ms if item else 0.0)
            if text:
                self.history.append((line["role"], text))

    # Losing and replacing the upstream session ----------------------------------------------

    def upstream_lost(self, now: float) -> None:
        """The Realtime socket is gone mid-call. What the caller already has keeps playing;
        everything tied to the old session (the response under way, pending tool calls,
        items owed a response) is let go."""
        self._upstream_open = False
        self._continue_after_reconnect = self._active_response is not None
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
        self._owed.clear()
        self._owed_added.clear()

    def upstream_reopened(self, now: float) -> None:
        """A new session replaces the lost one: configure it as before, replay the
        conversation so far as text items (what the caller heard, in order), then go on: an
        answer that was cut off is continued, and the caller's buffered audio follows."""
        self._upstream_open = True
        replay = [self.dialect.session_update(self.session)]
        pending = [(e.role, e.text) for e in self.transcript.pending() if e.text]
        for role, text in (*self.history, *pending):
            item_id = self._new_item_id()
            if role == "caller":
                replay.append(self.dialect.user_text(text, item_id))
            else:
                replay.append(self.dialect.assistant_text(text, item_id))
        self.upstream_out = [*replay, *self.upstream_out, *self._backlog]
        self._backlog.clear()
        if self._continue_after_reconnect:
            self._continue_after_reconnect = False
            self._request_response(CONTINUE_INSTRUCTIONS)

    def finish(self, reason: str, now: float) -> None:
        """The call is over: release the rest of the transcript and log `call_ended`."""
        if self.ended:
            return
        self.ended = True
        for item in self.items.values():
            if not item.interrupted and not self.playback.item_finished(item):
                self._agent_item_final(item, item.played_ms, interrupted=False, now=now)
        self._log_lines(self.transcript.drain())
        self.effects.append(
            Log(
                "call_ended",
                {
                    "reason": reason,
                    "duration_s": round(now - self.started_at, 3),
                    "turns": self.stats.turns,
                    "barge_ins": self.stats.barge_ins,
                    "frames_in": self.stats.frames_in,
                    "frames_out": self.stats.frames_out,
                    "frames_dropped": self.stats.frames_dropped,
                },
            )
        )


def heard_part(text: str, played_ms: float, audio_ms: float) -> str:
    """The words of an interrupted line the caller heard, by the share of its audio played
    (the transcript has no word timings; proportion is right within a word or two)."""
    if audio_ms <= 0 or played_ms >= audio_ms:
        return text
    words = text.split()
    return " ".join(words[: round(len(words) * played_ms / audio_ms)])


def _b64_len(data: str) -> int:
    """Decoded length of base64 text, without decoding it."""
    n = len(data)
    return n * 3 // 4 - data.count("=", n - 2) if n else 0
