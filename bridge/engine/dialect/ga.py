"""The GA dialect: ``gpt-realtime`` on OpenAI (``/v1/realtime``) and Azure (``/openai/v1``).

Sessions nest audio settings under ``audio.input`` / ``audio.output``, formats are objects
(``{"type": "audio/pcm", "rate": 24000}``), and event names are the engine's own.
"""

from __future__ import annotations

from typing import Any

from bridge.audio_format import AudioFormat
from bridge.engine._fields import one_of, require, typed, unknown_keys
from bridge.engine.config import (
    EngineSessionConfig,
    EngineTurnDetection,
    SessionPatch,
)
from bridge.engine.dialect.base import (
    EngineDialect,
    parse_max_tokens,
    parse_tools,
    parse_transcription,
    parse_turn_detection,
    render_transcription,
)
from bridge.engine.errors import ProtocolError
from bridge.engine.response import ResponseRecord
from bridge.voices import GA_VOICES, unsupported_voice_message


class GaDialect(EngineDialect):
    """``gpt-realtime`` (OpenAI ``/v1/realtime``, Azure ``/openai/v1/realtime``)."""

    name = "ga"
    assistant_audio_type = "output_audio"
    assistant_text_type = "output_text"

    _SESSION_KEYS = (
        "type",
        "audio",
        "include",
        "instructions",
        "max_output_tokens",
        "model",
        "output_modalities",
        "parallel_tool_calls",
        "prompt",
        "reasoning",
        "tool_choice",
        "tools",
        "tracing",
        "truncation",
    )
    _PASSTHROUGH = (
        "include",
        "parallel_tool_calls",
        "prompt",
        "reasoning",
        "tracing",
        "truncation",
    )
    _TD_KEYS = (
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "idle_timeout_ms",
        "create_response",
        "interrupt_response",
        "eagerness",
    )

    def parse_session(self, session: Any) -> SessionPatch:
        s = typed(session, dict, "session")
        kind = require(s, "type", "session")
        if kind == "transcription":
            raise ProtocolError(
                "invalid_value",
                "Transcription sessions are not supported by this server; use 'realtime'.",
                "session.type",
            )
        one_of(kind, ("realtime",), "session.type")
        unknown_keys(s, self._SESSION_KEYS, "session")
        changes: dict[str, Any] = {}
        if "instructions" in s:
            changes["instructions"] = typed(s["instructions"], str, "session.instructions")
        if "model" in s:
            changes["model"] = typed(s["model"], str, "session.model")
        if "output_modalities" in s:
            mods = typed(s["output_modalities"], list, "session.output_modalities")
            for m in mods:
                one_of(m, ("audio", "text"), "session.output_modalities")
            changes["output_modalities"] = tuple(mods)
        if "tools" in s:
            changes["tools"] = parse_tools(s["tools"], "session.tools")
        if "tool_choice" in s:
            changes["tool_choice"] = typed(s["tool_choice"], (str, dict), "session.tool_choice")
        if "max_output_tokens" in s:
            changes["max_output_tokens"] = parse_max_tokens(
                s["max_output_tokens"], "session.max_output_tokens"
            )
        if "audio" in s:
            audio = typed(s["audio"], dict, "session.audio")
            unknown_keys(audio, ("input", "output"), "session.audio")
            if "input" in audio:
                changes.update(self._parse_input(audio["input"]))
            if "output" in audio:
                changes.update(self._parse_output(audio["output"]))
        passthrough = {k: s[k] for k in self._PASSTHROUGH if k in s}
        return SessionPatch(changes, passthrough)

    def _parse_input(self, raw: Any) -> dict[str, Any]:
        path = "session.audio.input"
        inp = typed(raw, dict, path)
        unknown_keys(inp, ("format", "noise_reduction", "transcription", "turn_detection"), path)
        out: dict[str, Any] = {}
        if "format" in inp:
            out["input_format"] = self._parse_format(inp["format"], f"{path}.format")
        if "turn_detection" in inp:
            out["turn_detection"] = parse_turn_detection(
                inp["turn_detection"], f"{path}.turn_detection", keys=self._TD_KEYS
            )
        if "transcription" in inp:
            out["transcription"] = parse_transcription(
                inp["transcription"],
                f"{path}.transcription",
                ("model", "language", "prompt", "delay", "keywords", "languages"),
            )
        if "noise_reduction" in inp:
            out["noise_reduction"] = typed(
                inp["noise_reduction"], dict, f"{path}.noise_reduction", nullable=True
            )
        return out

    def _parse_output(self, raw: Any) -> dict[str, Any]:
        path = "session.audio.output"
        outp = typed(raw, dict, path)
        unknown_keys(outp, ("format", "voice", "speed"), path)
        out: dict[str, Any] = {}
        if "format" in outp:
            out["output_format"] = self._parse_format(outp["format"], f"{path}.format")
        if "voice" in outp:
            out["voice"] = typed(outp["voice"], (str, dict), f"{path}.voice")
            if isinstance(out["voice"], str) and out["voice"] not in GA_VOICES:
                raise ProtocolError(
                    "invalid_value",
                    unsupported_voice_message(out["voice"], "ga"),
                    f"{path}.voice",
                )
        if "speed" in outp:
            out["output_speed"] = float(typed(outp["speed"], float, f"{path}.speed"))
        return out

    @staticmethod
    def _parse_format(raw: Any, path: str) -> AudioFormat:
        fmt = typed(raw, dict, path)
        unknown_keys(fmt, ("type", "rate"), path)
        kind = one_of(fmt.get("type"), ("audio/pcm", "audio/pcmu", "audio/pcma"), f"{path}.type")
        if kind == "audio/pcma":
            raise ProtocolError(
                "invalid_value",
                "This server supports 'audio/pcm' and 'audio/pcmu' only.",
                f"{path}.type",
            )
        if kind == "audio/pcm":
            one_of(fmt.get("rate", 24000), (24000,), f"{path}.rate")
            return AudioFormat.PCM16
        if "rate" in fmt:
            raise ProtocolError(
                "unknown_parameter", f"Unknown parameter: '{path}.rate'.", f"{path}.rate"
            )
        return AudioFormat.PCMU

    @staticmethod
    def render_format(fmt: AudioFormat) -> dict[str, Any]:
        if fmt is AudioFormat.PCM16:
            return {"type": "audio/pcm", "rate": 24000}
        return {"type": "audio/pcmu"}

    def render_session(self, config: EngineSessionConfig, session_id: str) -> dict[str, Any]:
        td = config.turn_detection
        session: dict[str, Any] = {
            "type": "realtime",
            "output_modalities": list(config.output_modalities),
            "instructions": config.instructions,
            "audio": {
                "input": {
                    "format": self.render_format(config.input_format),
                    "noise_reduction": config.noise_reduction,
                    "transcription": render_transcription(config.transcription),
                    "turn_detection": _render_td_ga(td),
                },
                "output": {
                    "format": self.render_format(config.output_format),
                    "voice": config.voice,
                    "speed": config.output_speed,
                },
            },
            "tools": list(config.tools),
            "tool_choice": config.tool_choice,
            "max_output_tokens": config.max_output_tokens,
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
        }
        if config.model is not None:
            session["model"] = config.model
        session.update(config.passthrough)
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
            "output_modalities": list(config.output_modalities),
            "max_output_tokens": config.max_output_tokens,
            "audio": {
                "output": {
                    "format": self.render_format(config.output_format),
                    "voice": config.voice_name,
                }
            },
            "usage": response.usage,
            "metadata": response.overrides.get("metadata"),
        }


def _render_td_ga(td: EngineTurnDetection | None) -> dict[str, Any] | None:
    if td is None:
        return None
    if td.type == "semantic_vad":
        return {
            "type": "semantic_vad",
            "eagerness": td.eagerness,
            "create_response": td.create_response,
            "interrupt_response": td.interrupt_response,
        }
    return {
        "type": "server_vad",
        "threshold": td.threshold,
        "prefix_padding_ms": td.prefix_padding_ms,
        "silence_duration_ms": td.silence_duration_ms,
        "idle_timeout_ms": td.idle_timeout_ms,
        "create_response": td.create_response,
        "interrupt_response": td.interrupt_response,
    }
