"""The beta dialect: the older ``OpenAI-Beta: realtime=v1`` shape Azure preview api-versions
still speak.

Sessions are flat (``input_audio_format``, ``turn_detection``), formats are strings
(``"pcm16"``, ``"g711_ulaw"``), and a few events and fields have older names or none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.audio_format import AudioFormat
from bridge.engine._fields import one_of, typed, unknown_keys
from bridge.engine.config import (
    EngineSessionConfig,
    SessionPatch,
)
from bridge.engine.dialect.base import (
    ITEM_META,
    EngineDialect,
    parse_max_tokens,
    parse_tools,
    parse_transcription,
    parse_turn_detection,
    render_transcription,
)
from bridge.engine.errors import ProtocolError
from bridge.engine.response import ResponseRecord
from bridge.voices import BETA_VOICES, unsupported_voice_message

_BETA_FORMATS = {"pcm16": AudioFormat.PCM16, "g711_ulaw": AudioFormat.PCMU}
_BETA_MODELS = (
    "gpt-realtime",
    "gpt-realtime-2025-08-28",
    "gpt-4o-realtime-preview",
    "gpt-4o-realtime-preview-2024-10-01",
    "gpt-4o-realtime-preview-2024-12-17",
    "gpt-4o-realtime-preview-2025-06-03",
    "gpt-4o-mini-realtime-preview",
    "gpt-4o-mini-realtime-preview-2024-12-17",
)

_BETA_EVENT_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
_BETA_DROPPED_EVENTS = frozenset({"conversation.item.done"})
_BETA_DROPPED_FIELDS = {"response.function_call_arguments.done": ("name",)}


class BetaDialect(EngineDialect):
    """The beta shape (``OpenAI-Beta: realtime=v1``; Azure preview api-versions)."""

    name = "beta"
    assistant_audio_type = "audio"
    assistant_text_type = "text"

    _SESSION_KEYS = (
        "client_secret",
        "input_audio_format",
        "input_audio_noise_reduction",
        "input_audio_transcription",
        "instructions",
        "max_response_output_tokens",
        "modalities",
        "model",
        "output_audio_format",
        "speed",
        "temperature",
        "tool_choice",
        "tools",
        "tracing",
        "turn_detection",
        "voice",
    )
    _PASSTHROUGH = ("client_secret", "temperature", "tracing")
    _TD_KEYS = (
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "create_response",
        "interrupt_response",
        "eagerness",
    )

    def parse_session(self, session: Any) -> SessionPatch:
        s = typed(session, dict, "session")
        unknown_keys(s, self._SESSION_KEYS, "session")
        changes: dict[str, Any] = {}
        if "instructions" in s:
            changes["instructions"] = typed(s["instructions"], str, "session.instructions")
        if "model" in s:
            changes["model"] = typed(s["model"], str, "session.model")
        if "modalities" in s:
            mods = typed(s["modalities"], list, "session.modalities")
            for m in mods:
                one_of(m, ("audio", "text"), "session.modalities")
            changes["output_modalities"] = tuple(mods)
        for key, field_name in (
            ("input_audio_format", "input_format"),
            ("output_audio_format", "output_format"),
        ):
            if key in s:
                value = one_of(s[key], ("pcm16", "g711_ulaw", "g711_alaw"), f"session.{key}")
                if value == "g711_alaw":
                    raise ProtocolError(
                        "invalid_value",
                        "This server supports 'pcm16' and 'g711_ulaw' only.",
                        f"session.{key}",
                    )
                changes[field_name] = _BETA_FORMATS[value]
        if "turn_detection" in s:
            changes["turn_detection"] = parse_turn_detection(
                s["turn_detection"], "session.turn_detection", keys=self._TD_KEYS
            )
        if "input_audio_transcription" in s:
            changes["transcription"] = parse_transcription(
                s["input_audio_transcription"],
                "session.input_audio_transcription",
                ("model", "language", "prompt"),
            )
        if "input_audio_noise_reduction" in s:
            changes["noise_reduction"] = typed(
                s["input_audio_noise_reduction"],
                dict,
                "session.input_audio_noise_reduction",
                nullable=True,
            )
        if "voice" in s:
            changes["voice"] = typed(s["voice"], str, "session.voice")
            if changes["voice"] not in BETA_VOICES:
                raise ProtocolError(
                    "invalid_value",
                    unsupported_voice_message(changes["voice"], "beta"),
                    "session.voice",
                )
        if "speed" in s:
            changes["output_speed"] = float(typed(s["speed"], float, "session.speed"))
        if "tools" in s:
            changes["tools"] = parse_tools(s["tools"], "session.tools")
        if "tool_choice" in s:
            changes["tool_choice"] = typed(s["tool_choice"], str, "session.tool_choice")
        if "max_response_output_tokens" in s:
            changes["max_output_tokens"] = parse_max_tokens(
                s["max_response_output_tokens"], "session.max_response_output_tokens"
            )
        passthrough = {k: s[k] for k in self._PASSTHROUGH if k in s}
        return SessionPatch(changes, passthrough)

    def _message_content(self, item: Mapping[str, Any]) -> Any:
        return item.get("content", [])

    def _item_keys(self, kind: str) -> tuple[str, ...]:
        # The beta item is one flat model: every field is allowed on every type.
        return ("type", "role", "content", "name", "arguments", "call_id", "output", *ITEM_META)

    @staticmethod
    def render_format(fmt: AudioFormat) -> str:
        return "pcm16" if fmt is AudioFormat.PCM16 else "g711_ulaw"

    def render_session(self, config: EngineSessionConfig, session_id: str) -> dict[str, Any]:
        td = config.turn_detection
        session: dict[str, Any] = {
            "id": session_id,
            "modalities": _beta_modalities(config.output_modalities),
            "instructions": config.instructions,
            "voice": config.voice_name,
            "input_audio_format": self.render_format(config.input_format),
            "output_audio_format": self.render_format(config.output_format),
            "input_audio_transcription": render_transcription(config.transcription),
            "input_audio_noise_reduction": config.noise_reduction,
            "turn_detection": None
            if td is None
            else {
                "type": td.type,
                "threshold": td.threshold,
                "prefix_padding_ms": td.prefix_padding_ms,
                "silence_duration_ms": td.silence_duration_ms,
                "create_response": td.create_response,
                "interrupt_response": td.interrupt_response,
                **({"eagerness": td.eagerness} if td.type == "semantic_vad" else {}),
            },
            "tools": list(config.tools),
            "tool_choice": config.tool_choice if isinstance(config.tool_choice, str) else "auto",
            "temperature": 0.8,
            "max_response_output_tokens": config.max_output_tokens,
            "speed": config.output_speed,
            "tracing": None,
        }
        if config.model in _BETA_MODELS:
            session["model"] = config.model
        session.update({k: v for k, v in config.passthrough.items() if k != "client_secret"})
        return session

    def render_response(
        self, response: ResponseRecord, config: EngineSessionConfig
    ) -> dict[str, Any]:
        return {
            "id": response.id,
            "object": "realtime.response",
            "status": response.status,
            "status_details": response.status_details,
            "output": [self.render_item(item) for item in response.output],
            "conversation_id": response.conversation_id,
            "modalities": _beta_modalities(config.output_modalities),
            "voice": config.voice_name,
            "output_audio_format": self.render_format(config.output_format),
            "max_output_tokens": config.max_output_tokens,
            "usage": response.usage,
            "metadata": response.overrides.get("metadata"),
        }

    def outgoing(self, event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event["type"]
        if kind in _BETA_DROPPED_EVENTS:
            return None
        dropped = _BETA_DROPPED_FIELDS.get(kind, ())
        if kind in _BETA_EVENT_NAMES or dropped:
            event = {k: v for k, v in event.items() if k not in dropped}
            event["type"] = _BETA_EVENT_NAMES.get(kind, kind)
        return event


def _beta_modalities(modalities: tuple[str, ...]) -> list[str]:
    # Beta sessions speak "audio" as "audio and its text transcript".
    return ["audio", "text"] if "audio" in modalities else list(modalities)
