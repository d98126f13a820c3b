"""One Realtime session as a state machine without I/O.

Feed it client messages (:meth:`RealtimeSession.receive`) and the results of the slow
plug-ins (:meth:`~RealtimeSession.transcription_completed`,
:meth:`~RealtimeSession.response_planned`); read what to send
(:meth:`~RealtimeSession.events_to_send`) and what work to start
(:meth:`~RealtimeSession.jobs_to_run`); call :meth:`~RealtimeSession.advance` to stream the
active response one audio chunk at a time. No sockets, no clocks, no tasks: the adapter in
:mod:`bridge.engine.server` owns those, including the pacing of audio.

The only clock here is the input-audio timeline (samples the client appended), which is
what the protocol's ``audio_start_ms`` / ``audio_end_ms`` are measured on.

Size: one state machine. Its handlers (client events, caller audio and turns, responses)
all read and change the same state: the conversation, the input buffer, the active response
and the outbox. Split into modules, they would pass that state around rather than separate
concerns; what is separable already lives elsewhere (wire spellings in
:mod:`bridge.engine.dialect`, event parsing in :mod:`bridge.engine.protocol`, the plug-ins,
and all I/O in :mod:`bridge.engine.server`).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.engine.buffer import InputAudioBuffer
from bridge.engine.codec import ENGINE_RATE, InputDecoder, Pcm, encode_output
from bridge.engine.config import EngineSessionConfig, EngineTurnDetection
from bridge.engine.dialect import DialectName, EngineDialect, get_dialect
from bridge.engine.errors import ProtocolError
from bridge.engine.ids import IdGenerator
from bridge.engine.items import (
    ContentPart,
    Conversation,
    FunctionCallItem,
    FunctionCallOutputItem,
    Item,
    ItemStatus,
    MessageItem,
)
from bridge.engine.protocol import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    ClientEvent,
    ItemCreate,
    ItemDelete,
    ItemRetrieve,
    ItemTruncate,
    OutputAudioClear,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    decode_message,
    parse_client_event,
)
from bridge.engine.responder import Failure, Output, ResponseRequest, Speech, ToolCall
from bridge.engine.response import CancelReason, ResponseRecord, ResponseStatus
from bridge.engine.vad import EnergyVad, Vad, VoiceStarted, threshold_to_dbfs

ClientEventValidator = Callable[[Mapping[str, Any]], Sequence[ProtocolError]]
"""Extra checks on raw client events (e.g. a schema oracle in tests); any error it returns
is answered like the service would, and the event is not applied."""

VadFactory = Callable[[EngineTurnDetection], Vad]


def default_vad_factory(turn_detection: EngineTurnDetection) -> Vad:
    """An :class:`EnergyVad` tuned by the session's turn-detection settings."""
    return EnergyVad(
        threshold_dbfs=threshold_to_dbfs(turn_detection.threshold),
        silence_ms=turn_detection.effective_silence_ms,
    )


@dataclass(frozen=True)
class TranscribeJob:
    """Transcribe a committed user turn, then call ``transcription_completed``/``_failed``."""

    item_id: str
    audio: Pcm


@dataclass(frozen=True)
class RespondJob:
    """Ask the responder for the outputs of a response, then call ``response_planned``."""

    request: ResponseRequest


Job = TranscribeJob | RespondJob


@dataclass(frozen=True)
class ErrorRecord:
    """An ``error`` the session answered with, and which client event caused it.

    ``from_validator`` marks errors found by the injected validator rather than by the
    engine's own rules, so a caller can tell schema mistakes from protocol misuse.
    """

    code: str | None
    message: str
    param: str | None
    client_event_type: str | None
    client_event_id: str | None
    from_validator: bool = False


_WORDS = re.compile(r"\S+\s*")


@dataclass
class _OpenItem:
    response: ResponseRecord
    item: Item
    output_index: int
    part: ContentPart | None = None


class RealtimeSession:
    """The server side of one Realtime session.

    Parameters:
        dialect: ``"ga"`` or ``"beta"`` (or an :class:`EngineDialect`).
        config: initial effective configuration (the service's defaults when None).
        vad_factory: builds the VAD whenever turn detection is (re)configured.
        ids: id source; inject a seeded one for reproducible ids.
        chunk_ms: audio per ``…audio.delta`` event.
        min_commit_ms: shortest buffer a commit accepts (the service requires 100 ms).
        vad_idle_buffer_ms: with server VAD, caller audio older than this that is not part of
            speech is dropped: it can never become part of a turn, and a phone call streams
            audio for hours.
        validator: optional extra checks on every raw client event.
    """

    def __init__(
        self,
        dialect: DialectName | EngineDialect = "ga",
        *,
        config: EngineSessionConfig | None = None,
        vad_factory: VadFactory = default_vad_factory,
        ids: IdGenerator | None = None,
        chunk_ms: int = 100,
        min_commit_ms: int = 100,
        vad_idle_buffer_ms: int = 2000,
        validator: ClientEventValidator | None = None,
    ) -> None:
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        self.dialect = get_dialect(dialect)
        self.config = config if config is not None else EngineSessionConfig()
        self.ids = ids if ids is not None else IdGenerator()
        self.chunk_ms = chunk_ms
        self.min_commit_ms = min_commit_ms
        self.vad_idle_buffer_ms = vad_idle_buffer_ms
        self.session_id = self.ids.new("sess")
        self.conversation = Conversation(self.ids.new("conv"))
        self.response: ResponseRecord | None = None
        """The active response, if any (``in_progress``)."""
        self.responses: list[ResponseRecord] = []
        """Every response of the session, in creation order."""
        self.errors: list[ErrorRecord] = []
        self._vad_factory = vad_factory
        self._validator = validator
        self._outbox: list[dict[str, Any]] = []
        self._jobs: list[Job] = []
        self._decoder = InputDecoder(self.config.input_format)
        self._buffer = InputAudioBuffer()
        self._vad: Vad | None = None
        self._vad_origin = 0
        self._idle_samples = 0  # input audio since the last speech or response (idle timeout)
        self._speech: tuple[str, int] | None = None  # (item_id, audio start sample)
        self._stream: Generator[int, None, None] | None = None
        self._open: _OpenItem | None = None
        self._assistant_audio_sent = False
        self._reset_vad()
        self._emit("session.created", session=self._render_session())

    # --- inputs ----------------------------------------------------------------------------

    def receive(self, message: str | bytes) -> None:
        """One WebSocket message from the client."""
        try:
            event = decode_message(message)
        except ProtocolError as exc:
            self._error(exc, None)
            return
        self.receive_event(event)

    def receive_event(self, event: Mapping[str, Any]) -> None:
        """One decoded client event. Errors are answered with ``error`` events, never raised."""
        try:
            if self._validator is not None:
                problems = self._validator(event)
                if problems:
                    self._error(problems[0], event, from_validator=True)
                    return
            self._handle(parse_client_event(event))
        except ProtocolError as exc:
            self._error(exc, event)

    def transcription_completed(self, item_id: str, transcript: str) -> None:
        """The transcriber finished a user turn."""
        part = self._input_audio_part(item_id)
        if part is not None:
            part.transcript = transcript
        if self.config.transcription is not None:
            seconds = part.audio_ms / 1000 if part is not None else 0.0
            self._emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=transcript,
                usage={"type": "duration", "seconds": round(seconds, 3)},
            )

    def transcription_failed(self, item_id: str, message: str) -> None:
        if self.config.transcription is not None:
            self._emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error={"type": "server_error", "code": None, "message": message, "param": None},
            )

    def response_planned(self, response_id: str, outputs: Sequence[Output]) -> None:
        """The responder's outputs for ``response_id``; ignored if that response has ended.

        Every :class:`Speech` must carry its audio by now (the adapter synthesizes it).
        """
        if self.response is None or self.response.id != response_id:
            return
        for output in outputs:
            if isinstance(output, Speech) and output.audio is None:
                raise ValueError("Speech outputs need audio before they are planned")
        self._stream = self._run(self.response, list(outputs))

    def response_failed(self, response_id: str, message: str) -> None:
        if self.response is None or self.response.id != response_id:
            return
        self._cancel_stream()
        details = {
            "type": "failed",
            "error": {"type": "server_error", "code": None, "message": message},
        }
        self._finish(self.response, "failed", details)

    def advance(self) -> int | None:
        """Stream the next step of the active response.

        Returns the milliseconds of audio that step emitted (0 for steps without audio), or
        None when nothing is streaming. The adapter paces audio by these durations.
        """
        if self._stream is None:
            return None
        try:
            return next(self._stream)
        except StopIteration:
            self._stream = None
            return 0

    # --- outputs ---------------------------------------------------------------------------

    def events_to_send(self) -> list[dict[str, Any]]:
        """Server events produced since the last call, in order, already in the dialect."""
        events, self._outbox = self._outbox, []
        return events

    def jobs_to_run(self) -> list[Job]:
        jobs, self._jobs = self._jobs, []
        return jobs

    @property
    def streaming(self) -> bool:
        """Whether :meth:`advance` has response events to produce."""
        return self._stream is not None

    @property
    def input_ms(self) -> float:
        """Length of the input-audio timeline so far, in milliseconds."""
        return self._buffer.end * 1000 / ENGINE_RATE

    @property
    def buffered_ms(self) -> float:
        """Uncommitted input audio held, in milliseconds."""
        return self._buffer.ms

    # --- client events ---------------------------------------------------------------------

    def _handle(self, event: ClientEvent) -> None:
        if isinstance(event, AudioAppend):
            self._ingest(self._decoder.decode(event.audio))
        elif isinstance(event, SessionUpdate):
            self._update_session(event)
        elif isinstance(event, AudioCommit):
            self._manual_commit()
        elif isinstance(event, AudioClear):
            self._clear_buffer()
            self._emit("input_audio_buffer.cleared")
        elif isinstance(event, ItemCreate):
            self._create_item(event)
        elif isinstance(event, ItemTruncate):
            self._truncate(event)
        elif isinstance(event, ItemDelete):
            if self.conversation.delete(event.item_id) is None:
                raise _item_not_found(event.item_id)
            self._emit("conversation.item.deleted", item_id=event.item_id)
        elif isinstance(event, ItemRetrieve):
            item = self.conversation.get(event.item_id)
            if item is None:
                raise _item_not_found(event.item_id)
            self._emit("conversation.item.retrieved", item=self.dialect.render_item(item))
        elif isinstance(event, ResponseCreate):
            if self.response is not None:
                raise ProtocolError(
                    "conversation_already_has_active_response",
                    f"Conversation already has an active response in progress: "
                    f"{self.response.id}. Wait until the response is finished before creating "
                    f"a new one.",
                )
            self._start_response(event.response)
        elif isinstance(event, ResponseCancel):
            if self.response is None or event.response_id not in (None, self.response.id):
                raise ProtocolError(
                    "response_cancel_not_active", "Cancellation failed: no active response found"
                )
            self._cancel("client_cancelled")
        elif isinstance(event, OutputAudioClear):
            raise ProtocolError(
                "invalid_value",
                "output_audio_buffer.clear is only supported for WebRTC and SIP sessions.",
                "type",
            )

    def _update_session(self, event: SessionUpdate) -> None:
        patch = self.dialect.parse_session(event.session)
        new = self.config.apply(patch)
        if new.voice != self.config.voice and self._assistant_audio_sent:
            raise ProtocolError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                "session.voice",
            )
        old, self.config = self.config, new
        if new.input_format is not old.input_format:
            self._decoder = InputDecoder(new.input_format)
        if new.turn_detection != old.turn_detection:
            self._reset_vad()
        self._emit("session.updated", session=self._render_session())

    def _create_item(self, event: ItemCreate) -> None:
        item = self.dialect.parse_item(event.item, self.config, self.ids.new("item"))
        if self.conversation.get(item.id) is not None:
            raise ProtocolError(
                "invalid_value", f"Item with id '{item.id}' already exists.", "item.id"
            )
        if (
            isinstance(item, FunctionCallOutputItem)
            and self.conversation.function_call(item.call_id) is None
        ):
            raise ProtocolError(
                "invalid_tool_call_id",
                f"Tool call ID '{item.call_id}' not found in conversation.",
                "item.call_id",
            )
        try:
            previous = self.conversation.add(item, event.previous_item_id)
        except KeyError:
            raise ProtocolError(
                "invalid_value",
                f"Previous item with id '{event.previous_item_id}' not found.",
                "previous_item_id",
            ) from None
        self._item_added(item, previous)

    def _truncate(self, event: ItemTruncate) -> None:
        item = self.conversation.get(event.item_id)
        if item is None:
            raise _item_not_found(event.item_id, "item_id")
        if not isinstance(item, MessageItem) or item.role != "assistant":
            raise ProtocolError(
                "invalid_value", "Only assistant messages can be truncated.", "item_id"
            )
        if not 0 <= event.content_index < len(item.content) or (
            item.content[event.content_index].type != "output_audio"
        ):
            raise ProtocolError(
                "invalid_value",
                f"Content index {event.content_index} of item '{item.id}' is not audio.",
                "content_index",
            )
        part = item.content[event.content_index]
        length_ms = part.audio_ms
        if event.audio_end_ms > length_ms:
            raise ProtocolError(
                "invalid_value",
                f"Audio content of {math.floor(length_ms)}ms is already shorter than "
                f"{event.audio_end_ms}ms",
                "audio_end_ms",
            )
        assert part.format is not None
        kept = event.audio_end_ms / length_ms if length_ms else 1.0
        words = _WORDS.findall(part.transcript or "")
        part.transcript = "".join(words[: math.floor(len(words) * kept + 1e-9)]).rstrip()
        part.audio = part.audio[: event.audio_end_ms * part.format.bytes_per_ms]
        part.truncated = True
        self._emit(
            "conversation.item.truncated",
            item_id=item.id,
            content_index=event.content_index,
            audio_end_ms=event.audio_end_ms,
        )

    # --- caller audio and turns ------------------------------------------------------------

    def _reset_vad(self) -> None:
        td = self.config.turn_detection
        self._vad = self._vad_factory(td) if td is not None else None
        self._vad_origin = self._buffer.end
        self._speech = None

    def _ingest(self, pcm: Pcm) -> None:
        self._buffer.append(pcm)
        if self._vad is None:
            return
        for vad_event in self._vad.feed(pcm):
            sample = self._vad_origin + vad_event.sample
            if isinstance(vad_event, VoiceStarted):
                self._speech_started(sample)
            else:
                self._speech_stopped(sample)
        if self._speech is None:
            td = self.config.turn_detection
            keep_ms = max(self.vad_idle_buffer_ms, (td.prefix_padding_ms if td else 0) + 500)
            self._buffer.keep_last(keep_ms * ENGINE_RATE // 1000)
            self._count_idle(len(pcm))
        else:
            self._idle_samples = 0

    def _count_idle(self, samples: int) -> None:
        """GA `server_vad.idle_timeout_ms`: input audio with no speech and no response for
        that long triggers `input_audio_buffer.timeout_triggered` and a response, so the model
        prompts a silent caller (as the hosted service does)."""
        td = self.config.turn_detection
        if td is None or td.type != "server_vad" or not td.idle_timeout_ms:
            return
        if self.response is not None:
            self._idle_samples = 0
            return
        self._idle_samples += samples
        if self._idle_samples >= td.idle_timeout_ms * ENGINE_RATE // 1000:
            end = self._buffer.end
            start = end - self._idle_samples
            self._idle_samples = 0
            self._emit(
                "input_audio_buffer.timeout_triggered",
                audio_start_ms=_ms(max(start, 0)),
                audio_end_ms=_ms(end),
                item_id=self.ids.new("item"),
            )
            self._start_response({})

    def _speech_started(self, sample: int) -> None:
        td = self.config.turn_detection
        assert td is not None
        start = max(sample - td.prefix_padding_ms * ENGINE_RATE // 1000, self._buffer.start)
        item_id = self.ids.new("item")
        self._speech = (item_id, start)
        self._emit("input_audio_buffer.speech_started", audio_start_ms=_ms(start), item_id=item_id)
        if td.interrupt_response and self.response is not None:
            self._cancel("turn_detected")

    def _speech_stopped(self, sample: int) -> None:
        td = self.config.turn_detection
        if self._speech is None or td is None:
            return
        item_id, start = self._speech
        self._speech = None
        self._emit("input_audio_buffer.speech_stopped", audio_end_ms=_ms(sample), item_id=item_id)
        self._commit(item_id, self._buffer.take(start, sample))
        if td.create_response and self.response is None:
            self._start_response({})

    def _manual_commit(self) -> None:
        buffered_ms = self.buffered_ms
        if buffered_ms < self.min_commit_ms:
            raise ProtocolError(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least "
                f"{self.min_commit_ms}ms of audio, but buffer only has {buffered_ms:.2f}ms of "
                f"audio.",
            )
        item_id = self._speech[0] if self._speech is not None else self.ids.new("item")
        audio = self._buffer.take_all()
        self._reset_vad()
        self._commit(item_id, audio)

    def _clear_buffer(self) -> None:
        self._buffer.clear()
        self._reset_vad()

    def _commit(self, item_id: str, audio: Pcm) -> None:
        item = MessageItem(item_id, "user", [ContentPart("input_audio", pcm=audio)])
        previous = self.conversation.add(item)
        self._emit("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        self._item_added(item, previous)
        self._jobs.append(TranscribeJob(item_id, audio))

    def _input_audio_part(self, item_id: str) -> ContentPart | None:
        item = self.conversation.get(item_id)
        if isinstance(item, MessageItem):
            return next((p for p in item.content if p.type == "input_audio"), None)
        return None

    # --- responses -------------------------------------------------------------------------

    def _start_response(self, overrides: Mapping[str, Any]) -> None:
        instructions = overrides.get("instructions", self.config.instructions)
        if not isinstance(instructions, str):
            raise ProtocolError(
                "invalid_type",
                "Invalid type for 'response.instructions': expected a string.",
                "response.instructions",
            )
        response = ResponseRecord(
            id=self.ids.new("resp"),
            conversation_id=self.conversation.id,
            instructions=instructions,
            overrides=dict(overrides),
        )
        self.response = response
        self.responses.append(response)
        self._emit("response.created", response=self._render_response(response))
        self._jobs.append(
            RespondJob(
                ResponseRequest(
                    response_id=response.id,
                    conversation=tuple(self.conversation.items),
                    instructions=instructions,
                    tools=self.config.tools,
                    voice=self.config.voice_name,
                    overrides=response.overrides,
                )
            )
        )

    def _run(self, response: ResponseRecord, outputs: list[Output]) -> Generator[int, None, None]:
        for output in outputs:
            if isinstance(output, Speech):
                yield from self._run_speech(response, output)
            elif isinstance(output, ToolCall):
                yield from self._run_call(response, output)
            elif isinstance(output, Failure):
                error = {"type": output.type, "code": output.code, "message": output.message}
                self._finish(response, "failed", {"type": "failed", "error": error})
                return
        self._finish(response, "completed", None)

    def _start_item(self, response: ResponseRecord, item: Item) -> dict[str, Any]:
        index = len(response.output)
        response.output.append(item)
        previous = self.conversation.add(item)
        ref = {"response_id": response.id, "item_id": item.id, "output_index": index}
        self._emit(
            "response.output_item.added",
            response_id=response.id,
            output_index=index,
            item=self.dialect.render_item(item),
        )
        self._emit(
            "conversation.item.added",
            previous_item_id=previous,
            item=self.dialect.render_item(item),
        )
        self._open = _OpenItem(response, item, index)
        return ref

    def _run_speech(self, response: ResponseRecord, speech: Speech) -> Generator[int, None, None]:
        assert speech.audio is not None
        fmt = self.config.output_format
        item = MessageItem(self.ids.new("item"), "assistant", [], status="in_progress")
        ref = self._start_item(response, item)
        part = ContentPart("output_audio", transcript="", format=fmt)
        item.content.append(part)
        assert self._open is not None
        self._open.part = part
        self._emit(
            "response.content_part.added",
            **ref,
            content_index=0,
            part={"type": "audio", "transcript": ""},
        )
        wire = encode_output(speech.audio, fmt)
        step = self.chunk_ms * fmt.bytes_per_ms
        n_chunks = math.ceil(len(wire) / step)
        words = _WORDS.findall(speech.text)
        said = 0
        for k in range(n_chunks):
            due = math.ceil(len(words) * (k + 1) / n_chunks)
            for word in words[said:due]:
                part.transcript = (part.transcript or "") + word
                self._emit(
                    "response.output_audio_transcript.delta", **ref, content_index=0, delta=word
                )
            said = max(said, due)
            chunk = wire[k * step : (k + 1) * step]
            part.audio += chunk
            self._assistant_audio_sent = True
            self._emit(
                "response.output_audio.delta",
                **ref,
                content_index=0,
                delta=base64.b64encode(chunk).decode("ascii"),
            )
            yield fmt.duration_ms(len(chunk))
            if part.truncated:
                break
        if not part.truncated:
            for word in words[said:]:
                part.transcript = (part.transcript or "") + word
                self._emit(
                    "response.output_audio_transcript.delta", **ref, content_index=0, delta=word
                )
        self._close_item("incomplete" if part.truncated else "completed")
        yield 0

    def _run_call(self, response: ResponseRecord, call: ToolCall) -> Generator[int, None, None]:
        item = FunctionCallItem(
            self.ids.new("item"),
            call.call_id or self.ids.new("call"),
            call.name,
            status="in_progress",
        )
        ref = self._start_item(response, item)
        pieces = max(1, call.stream_ms // self.chunk_ms) if call.stream_ms else 1
        size = math.ceil(len(call.arguments) / pieces) or 1
        item.arguments = ""
        for start in range(0, max(len(call.arguments), 1), size):
            piece = call.arguments[start : start + size]
            item.arguments += piece
            self._emit(
                "response.function_call_arguments.delta",
                **ref,
                call_id=item.call_id,
                delta=piece,
            )
            if call.stream_ms:
                yield self.chunk_ms
        self._emit(
            "response.function_call_arguments.done",
            **ref,
            call_id=item.call_id,
            name=item.name,
            arguments=item.arguments,
        )
        self._close_item("completed")
        yield 0

    def _close_item(self, status: ItemStatus) -> None:
        """End the open output item: its part's done events, then the item's."""
        open_item, self._open = self._open, None
        if open_item is None:
            return
        item, ref = (
            open_item.item,
            {
                "response_id": open_item.response.id,
                "item_id": open_item.item.id,
                "output_index": open_item.output_index,
            },
        )
        part = open_item.part
        if part is not None:
            self._emit("response.output_audio.done", **ref, content_index=0)
            self._emit(
                "response.output_audio_transcript.done",
                **ref,
                content_index=0,
                transcript=part.transcript or "",
            )
            self._emit(
                "response.content_part.done",
                **ref,
                content_index=0,
                part={"type": "audio", "transcript": part.transcript or ""},
            )
        if isinstance(item, FunctionCallItem) and status == "incomplete":
            # "Also emitted when a Response is interrupted, incomplete, or cancelled" (the
            # openai package's ResponseFunctionCallArgumentsDoneEvent): with what was written.
            self._emit(
                "response.function_call_arguments.done",
                **ref,
                call_id=item.call_id,
                name=item.name,
                arguments=item.arguments,
            )
        item.status = status
        rendered = self.dialect.render_item(item)
        self._emit(
            "response.output_item.done",
            response_id=ref["response_id"],
            output_index=ref["output_index"],
            item=rendered,
        )
        self._emit("conversation.item.done", item=rendered)

    def _cancel(self, reason: CancelReason) -> None:
        response = self.response
        if response is None:
            return
        self._cancel_stream()
        self._finish(response, "cancelled", {"type": "cancelled", "reason": reason})

    def _cancel_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._open is not None:
            self._close_item("incomplete")

    def _finish(
        self, response: ResponseRecord, status: ResponseStatus, details: dict[str, Any] | None
    ) -> None:
        response.status = status
        response.status_details = details
        response.usage = self._usage(response)
        self.response = None
        self._emit("response.done", response=self._render_response(response))
        self._emit(
            "rate_limits.updated",
            rate_limits=[
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 400000, "remaining": 395000, "reset_seconds": 0.75},
            ],
        )

    def _usage(self, response: ResponseRecord) -> dict[str, Any]:
        """Plausible token counts (the engine has no tokenizer): ~0.75 words per token,
        10 input and 20 output audio tokens per second."""
        text_in = sum(len(_WORDS.findall(_item_text(i))) for i in self.conversation) * 4 // 3
        audio_in = sum(
            int(p.audio_ms / 100)
            for i in self.conversation
            if isinstance(i, MessageItem) and i.role == "user"
            for p in i.content
        )
        text_out = sum(len(_WORDS.findall(_item_text(i))) for i in response.output) * 4 // 3
        audio_out = sum(
            int(p.audio_ms / 50)
            for i in response.output
            if isinstance(i, MessageItem)
            for p in i.content
        )
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "cached_tokens": 0,
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    # --- emitting --------------------------------------------------------------------------

    def _render_session(self) -> dict[str, Any]:
        return self.dialect.render_session(self.config, self.session_id)

    def _render_response(self, response: ResponseRecord) -> dict[str, Any]:
        return self.dialect.render_response(response, self.config)

    def _item_added(self, item: Item, previous: str | None) -> None:
        rendered = self.dialect.render_item(item)
        self._emit("conversation.item.added", previous_item_id=previous, item=rendered)
        self._emit("conversation.item.done", previous_item_id=previous, item=rendered)

    def _emit(self, type: str, **fields: Any) -> None:
        event = self.dialect.outgoing({"type": type, "event_id": self.ids.new("event"), **fields})
        if event is not None:
            self._outbox.append(event)

    def _error(
        self,
        exc: ProtocolError,
        event: Mapping[str, Any] | None,
        *,
        from_validator: bool = False,
    ) -> None:
        client_type = event.get("type") if event is not None else None
        client_id = event.get("event_id") if event is not None else None
        self.errors.append(
            ErrorRecord(
                exc.code,
                exc.message,
                exc.param,
                client_type if isinstance(client_type, str) else None,
                client_id if isinstance(client_id, str) else None,
                from_validator,
            )
        )
        self._emit(
            "error",
            error={
                "type": exc.type,
                "code": exc.code,
                "message": exc.message,
                "param": exc.param,
                "event_id": client_id if isinstance(client_id, str) else None,
            },
        )


def _ms(samples: int) -> int:
    return samples * 1000 // ENGINE_RATE


def _item_text(item: Item) -> str:
    if isinstance(item, MessageItem):
        return item.text
    if isinstance(item, FunctionCallItem):
        return item.arguments
    return item.output


def _item_not_found(item_id: str, param: str = "item_id") -> ProtocolError:
    return ProtocolError(
        "item_not_found", f"Conversation item with id '{item_id}' not found.", param
    )
