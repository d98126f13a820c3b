"""The bridge's own vocabulary of Realtime server events, the same for every dialect.

The call logic only ever sees these; `dialect.py` is the one place that knows the wire names.
Small frozen dataclasses: cheap to build per event, impossible to mutate by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bridge.audio_format import AudioFormat


@dataclass(frozen=True, slots=True)
class SessionCreated:
    pass


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    pass


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    item_id: str | None
    audio_start_ms: int | None


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str | None
    audio_end_ms: int | None


@dataclass(frozen=True, slots=True)
class InputCommitted:
    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class ItemAdded:
    """An item entered the conversation (user audio, user text, assistant message, tool call)."""

    item_id: str
    previous_item_id: str | None
    type: str
    role: str | None


@dataclass(frozen=True, slots=True)
class InputTranscript:
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class InputTranscriptFailed:
    item_id: str
    message: str


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    response_id: str


@dataclass(frozen=True, slots=True)
class OutputItemAdded:
    response_id: str
    item_id: str
    type: str
    role: str | None
    # For function calls: the beta dialect names the function only here.
    name: str | None = None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a microsecond per delta
class AudioDelta:
    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class AudioDone:
    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class TranscriptDone:
    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    """Words of an agent item's audio transcript as they are generated: what an interrupted
    line said before the caller cut in (its `.done` may never come, or come too late)."""

    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class IdleTimeout:
    """`input_audio_buffer.timeout_triggered`: the server's `idle_timeout_ms` passed with the
    caller silent, and the server asks the model to prompt them."""


@dataclass(frozen=True, slots=True)
class FunctionCall:
    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str
    status: str | None = None
    """The item's status as `response.done` reports it (`completed`, `incomplete`); None
    from `response.function_call_arguments.done`, which does not say."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    name: str  # "requests", "tokens"
    limit: float
    remaining: float
    reset_seconds: float


@dataclass(frozen=True, slots=True)
class RateLimits:
    limits: tuple[RateLimit, ...]


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: str
    reason: str | None = None
    # A failed response's `status_details.error`: why the model went silent.
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    # Function calls carried in `response.output`, for peers that skip the arguments events.
    function_calls: tuple[FunctionCall, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ItemTruncated:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class UpstreamError:
    code: str | None
    message: str
    type: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed event the bridge has no use for (rate limits, deltas we don't need)."""

    type: str


ServerEvent = (
    SessionCreated
    | SessionUpdated
    | SpeechStarted
    | SpeechStopped
    | InputCommitted
    | ItemAdded
    | InputTranscript
    | InputTranscriptFailed
    | ResponseCreated
    | OutputItemAdded
    | AudioDelta
    | AudioDone
    | TranscriptDone
    | TranscriptDelta
    | FunctionCall
    | ResponseDone
    | ItemTruncated
    | UpstreamError
    | RateLimits
    | IdleTimeout
    | Ignored
)


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """Server-side turn detection; `None` fields are left to the provider's defaults."""

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    idle_timeout_ms: int | None = None
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool = True
    interrupt_response: bool = True


@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str
    parameters: dict[str, object]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What one call's Realtime session should be, independent of the wire dialect."""

    instructions: str
    voice: str = "alloy"
    audio_format: AudioFormat = AudioFormat.PCM16
    speed: float | None = None
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    transcription_language: str | None = None
    turn_detection: TurnDetection = field(default_factory=TurnDetection)
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: Literal["auto", "none", "required"] = "auto"
    max_output_tokens: int | None = None
    noise_reduction: Literal["near_field", "far_field", "off"] | None = None
