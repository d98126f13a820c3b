"""The two dialects of the Realtime protocol, translated in this one place.

The state machine speaks one vocabulary: GA event names and neutral records
(:class:`EngineSessionConfig`, items, :class:`ResponseRecord`). An :class:`EngineDialect`
parses the client's ``session.update`` and items into those records, renders them back in
its own shape, and renames or trims outgoing events (:meth:`EngineDialect.outgoing`).

GA is ``gpt-realtime`` on OpenAI and Azure's ``/openai/v1`` endpoint; beta is the older
``OpenAI-Beta: realtime=v1`` shape that Azure preview api-versions still speak.
"""

from __future__ import annotations

import base64
import binascii
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from bridge.audio_format import AudioFormat
from bridge.engine._fields import one_of, require, typed, unknown_keys
from bridge.engine.codec import InputDecoder
from bridge.engine.config import (
    EngineSessionConfig,
    EngineTurnDetection,
    SessionPatch,
    Transcription,
)
from bridge.engine.errors import ProtocolError
from bridge.engine.items import (
    ContentPart,
    FunctionCallItem,
    FunctionCallOutputItem,
    Item,
    MessageItem,
)
from bridge.engine.response import ResponseRecord

DialectName = Literal["ga", "beta"]

_ITEM_META = ("id", "object", "status")


class EngineDialect(ABC):
    """How one dialect spells sessions, items, responses and event names."""

    name: ClassVar[DialectName]
    assistant_audio_type: ClassVar[str]
    assistant_text_type: ClassVar[str]

    # --- client → engine -------------------------------------------------------------------

    @abstractmethod
    def parse_session(self, session: Any) -> SessionPatch:
        """The ``session`` object of a ``session.update`` → the fields it changes."""

    def parse_item(self, raw: Any, config: EngineSessionConfig, item_id: str) -> Item:
        """The ``item`` of a ``conversation.item.create`` → a conversation item.

        ``item_id`` is used unless the client chose its own ``id``.
        """
        item = typed(raw, dict, "item")
        kind = one_of(
            require(item, "type", "item"),
            ("message", "function_call", "function_call_output"),
            "item.type",
        )
        unknown_keys(item, self._item_keys(kind), "item")
        chosen_id = typed(item.get("id", item_id), str, "item.id")
        if kind == "function_call_output":
            return FunctionCallOutputItem(
                id=chosen_id,
                call_id=typed(require(item, "call_id", "item"), str, "item.call_id"),
                output=typed(require(item, "output", "item"), str, "item.output"),
            )
        if kind == "function_call":
            return FunctionCallItem(
                id=chosen_id,
                call_id=typed(item.get("call_id", f"call_{chosen_id}"), str, "item.call_id"),
                name=typed(require(item, "name", "item"), str, "item.name"),
                arguments=typed(require(item, "arguments", "item"), str, "item.arguments"),
            )
        role = one_of(require(item, "role", "item"), ("user", "assistant", "system"), "item.role")
        content = typed(self._message_content(item), list, "item.content")
        parts = [
            self._parse_content(part, role, config, f"item.content[{i}]")
            for i, part in enumerate(content)
        ]
        return MessageItem(id=chosen_id, role=role, content=parts)

    def _message_content(self, item: Mapping[str, Any]) -> Any:
        return require(item, "content", "item")

    def _item_keys(self, kind: str) -> tuple[str, ...]:
        return {
            "message": ("type", "role", "content", *_ITEM_META),
            "function_call": ("type", "name", "arguments", "call_id", *_ITEM_META),
            "function_call_output": ("type", "call_id", "output", *_ITEM_META),
        }[kind]

    def _parse_content(
        self, raw: Any, role: str, config: EngineSessionConfig, path: str
    ) -> ContentPart:
        part = typed(raw, dict, path)
        unknown_keys(part, ("type", "text", "audio", "transcript"), path)
        allowed = {
            "user": ("input_text", "input_audio"),
            "system": ("input_text",),
            "assistant": (self.assistant_text_type, self.assistant_audio_type),
        }[role]
        kind = one_of(require(part, "type", path), allowed, f"{path}.type")
        if kind == "input_text" or kind == self.assistant_text_type:
            text = typed(require(part, "text", path), str, f"{path}.text")
            return ContentPart("input_text" if role != "assistant" else "output_text", text=text)
        transcript = typed(part.get("transcript"), str, f"{path}.transcript", nullable=True)
        if role == "assistant":
            return ContentPart(
                "output_audio", transcript=transcript, format=config.output_format, audio=b""
            )
        audio = _b64decode(typed(require(part, "audio", path), str, f"{path}.audio"), path)
        pcm = InputDecoder(config.input_format).decode(audio)
        return ContentPart("input_audio", transcript=transcript, pcm=pcm)

    # --- engine → client -------------------------------------------------------------------

    @abstractmethod
    def render_session(self, config: EngineSessionConfig, session_id: str) -> dict[str, Any]:
        """The ``session`` object of ``session.created`` / ``session.updated``."""

    def render_item(self, item: Item) -> dict[str, Any]:
        base: dict[str, Any] = {"id": item.id, "object": "realtime.item", "type": item.type}
        if isinstance(item, FunctionCallItem):
            return {
                **base,
                "status": item.status,
                "name": item.name,
                "call_id": item.call_id,
                "arguments": item.arguments,
            }
        if isinstance(item, FunctionCallOutputItem):
            return {**base, "status": item.status, "call_id": item.call_id, "output": item.output}
        return {
            **base,
            "status": item.status,
            "role": item.role,
            "content": [self.render_part(part) for part in item.content],
        }

    def render_part(self, part: ContentPart) -> dict[str, Any]:
        if part.type == "output_audio":
            return {"type": self.assistant_audio_type, "transcript": part.transcript}
        if part.type == "output_text":
            return {"type": self.assistant_text_type, "text": part.text}
        if part.type == "input_audio":
            return {"type": "input_audio", "transcript": part.transcript}
        return {"type": "input_text", "text": part.text}

    @abstractmethod
    def render_response(
        self, response: ResponseRecord, config: EngineSessionConfig
    ) -> dict[str, Any]:
        """The ``response`` object of ``response.created`` / ``response.done``."""

    def outgoing(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """A GA-vocabulary event in this dialect's words; None if the dialect lacks it."""
        return event

    @staticmethod
    @abstractmethod
    def render_format(fmt: AudioFormat) -> Any:
        """An audio format as this dialect writes it."""


def _b64decode(text: str, path: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            "invalid_value", f"Invalid value for '{path}.audio': not valid base64.", f"{path}.audio"
        ) from None


def _turn_detection(raw: Any, path: str, *, keys: tuple[str, ...]) -> EngineTurnDetection | None:
    if raw is None:
        return None
    td = typed(raw, dict, path)
    unknown_keys(td, keys, path)
    kind = one_of(td.get("type", "server_vad"), ("server_vad", "semantic_vad"), f"{path}.type")
    values: dict[str, Any] = {"type": kind}
    for key, kinds in (
        ("threshold", float),
        ("prefix_padding_ms", int),
        ("silence_duration_ms", int),
        ("idle_timeout_ms", int),
        ("create_response", bool),
        ("interrupt_response", bool),
    ):
        if td.get(key) is not None:
            values[key] = typed(td[key], kinds, f"{path}.{key}")
    if "eagerness" in td and td["eagerness"] is not None:
        values["eagerness"] = one_of(
            td["eagerness"], ("low", "medium", "high", "auto"), f"{path}.eagerness"
        )
    return EngineTurnDetection(**values)


def _transcription(raw: Any, path: str, keys: tuple[str, ...]) -> Transcription | None:
    if raw is None:
        return None
    tr = typed(raw, dict, path)
    unknown_keys(tr, keys, path)
    return Transcription(
        model=typed(tr.get("model"), str, f"{path}.model", nullable=True),
        language=typed(tr.get("language"), str, f"{path}.language", nullable=True),
        prompt=typed(tr.get("prompt"), str, f"{path}.prompt", nullable=True),
    )


def _tools(raw: Any, path: str) -> tuple[Mapping[str, Any], ...]:
    tools = typed(raw, list, path)
    for i, tool in enumerate(tools):
        typed(tool, dict, f"{path}[{i}]")
    return tuple(tools)


def _transcription_render(tr: Transcription | None) -> dict[str, Any] | None:
    if tr is None:
        return None
    return {
        k: v
        for k, v in (("model", tr.model), ("language", tr.language), ("prompt", tr.prompt))
        if v is not None
    }


def _usage(response: ResponseRecord) -> dict[str, Any] | None:
    return response.usage


# --------------------------------------------------------------------------------------------


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
            changes["tools"] = _tools(s["tools"], "session.tools")
        if "tool_choice" in s:
            changes["tool_choice"] = typed(s["tool_choice"], (str, dict), "session.tool_choice")
        if "max_output_tokens" in s:
            changes["max_output_tokens"] = _max_tokens(
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
            out["turn_detection"] = _turn_detection(
                inp["turn_detection"], f"{path}.turn_detection", keys=self._TD_KEYS
            )
        if "transcription" in inp:
            out["transcription"] = _transcription(
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
                    "transcription": _transcription_render(config.transcription),
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
            "usage": _usage(response),
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


def _max_tokens(value: Any, param: str) -> int | Literal["inf"]:
    if value == "inf":
        return "inf"
    return typed(value, int, param)


# --------------------------------------------------------------------------------------------


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
            changes["turn_detection"] = _turn_detection(
                s["turn_detection"], "session.turn_detection", keys=self._TD_KEYS
            )
        if "input_audio_transcription" in s:
            changes["transcription"] = _transcription(
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
        if "speed" in s:
            changes["output_speed"] = float(typed(s["speed"], float, "session.speed"))
        if "tools" in s:
            changes["tools"] = _tools(s["tools"], "session.tools")
        if "tool_choice" in s:
            changes["tool_choice"] = typed(s["tool_choice"], str, "session.tool_choice")
        if "max_response_output_tokens" in s:
            changes["max_output_tokens"] = _max_tokens(
                s["max_response_output_tokens"], "session.max_response_output_tokens"
            )
        passthrough = {k: s[k] for k in self._PASSTHROUGH if k in s}
        return SessionPatch(changes, passthrough)

    def _message_content(self, item: Mapping[str, Any]) -> Any:
        return item.get("content", [])

    def _item_keys(self, kind: str) -> tuple[str, ...]:
        # The beta item is one flat model: every field is allowed on every type.
        return ("type", "role", "content", "name", "arguments", "call_id", "output", *_ITEM_META)

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
            "input_audio_transcription": _transcription_render(config.transcription),
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
            "usage": _usage(response),
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


DIALECTS: Mapping[DialectName, EngineDialect] = {"ga": GaDialect(), "beta": BetaDialect()}


def get_dialect(name: DialectName | EngineDialect) -> EngineDialect:
    """A dialect by name (``"ga"`` or ``"beta"``), or the instance itself."""
    if isinstance(name, EngineDialect):
        return name
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; expected 'ga' or 'beta'") from None
