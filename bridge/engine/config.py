"""The effective configuration of one session, in neutral (dialect-free) terms.

Dialects parse ``session.update`` into a :class:`SessionPatch` and render a
:class:`EngineSessionConfig` back; the state machine only ever reads these typed values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from bridge.audio_format import AudioFormat

TurnDetectionType = Literal["server_vad", "semantic_vad"]

SEMANTIC_EAGERNESS_SILENCE_MS: Mapping[str, int] = {
    "low": 1500,
    "medium": 800,
    "auto": 800,
    "high": 400,
}
"""How long a pause ends a turn under ``semantic_vad``: the engine has no semantic model,
so eagerness maps to a fixed silence, from patient (low) to quick (high)."""


@dataclass(frozen=True)
class EngineTurnDetection:
    """Server-side turn detection, with the service's documented defaults."""

    type: TurnDetectionType = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"

    @property
    def effective_silence_ms(self) -> int:
        """The pause that ends a turn, whichever detection type is configured."""
        if self.type == "semantic_vad":
            return SEMANTIC_EAGERNESS_SILENCE_MS[self.eagerness]
        return self.silence_duration_ms


@dataclass(frozen=True)
class Transcription:
    """Input transcription settings; when present, user audio items get a transcript event."""

    model: str | None = "whisper-1"
    language: str | None = None
    prompt: str | None = None


DEFAULT_INSTRUCTIONS = (
    "You are a helpful, witty and friendly voice assistant. Keep your answers short."
)


@dataclass(frozen=True)
class EngineSessionConfig:
    """Everything the engine acts on, plus opaque settings it only echoes back.

    ``passthrough`` keeps the dialect-specific settings the engine accepts but does not act
    on (tracing, truncation, temperature, …), so ``session.updated`` shows the client what it
    set, as the service does.
    """

    model: str | None = None
    instructions: str = DEFAULT_INSTRUCTIONS
    input_format: AudioFormat = AudioFormat.PCM16
    output_format: AudioFormat = AudioFormat.PCM16
    turn_detection: EngineTurnDetection | None = field(default_factory=EngineTurnDetection)
    transcription: Transcription | None = None
    noise_reduction: Mapping[str, Any] | None = None
    voice: str | Mapping[str, Any] = "alloy"
    output_speed: float = 1.0
    output_modalities: tuple[str, ...] = ("audio",)
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | Mapping[str, Any] = "auto"
    max_output_tokens: int | Literal["inf"] = "inf"
    passthrough: Mapping[str, Any] = field(default_factory=dict)

    @property
    def voice_name(self) -> str:
        """The voice as a plain string (a custom voice object gives its id)."""
        if isinstance(self.voice, str):
            return self.voice
        return str(self.voice.get("id", ""))

    def apply(self, patch: SessionPatch) -> EngineSessionConfig:
        """Merge an update: only the fields the client sent change, as the service documents."""
        changes = dict(patch.changes)
        if patch.passthrough:
            changes["passthrough"] = {**self.passthrough, **patch.passthrough}
        return replace(self, **changes)


@dataclass(frozen=True)
class SessionPatch:
    """The fields present in one ``session.update``: ``EngineSessionConfig`` field → new value."""

    changes: Mapping[str, Any] = field(default_factory=dict)
    passthrough: Mapping[str, Any] = field(default_factory=dict)
