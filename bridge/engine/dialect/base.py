"""What both dialects share: the interface the state machine calls, the items and content
parts (spelled alike but for a few keys), and the settings both parse the same way (turn
detection, transcription, tools, token limits)."""

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

ITEM_META = ("id", "object", "status")


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
            "message": ("type", "role", "content", *ITEM_META),
            "function_call": ("type", "name", "arguments", "call_id", *ITEM_META),
            "function_call_output": ("type", "call_id", "output", *ITEM_META),
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


def parse_turn_detection(
    raw: Any, path: str, *, keys: tuple[str, ...]
) -> EngineTurnDetection | None:
    """A turn-detection object (``keys`` are the dialect's); ``null`` turns detection off."""
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


def parse_transcription(raw: Any, path: str, keys: tuple[str, ...]) -> Transcription | None:
    """Input-transcription settings; ``null`` turns transcription off."""
    if raw is None:
        return None
    tr = typed(raw, dict, path)
    unknown_keys(tr, keys, path)
    return Transcription(
        model=typed(tr.get("model"), str, f"{path}.model", nullable=True),
        language=typed(tr.get("language"), str, f"{path}.language", nullable=True),
        prompt=typed(tr.get("prompt"), str, f"{path}.prompt", nullable=True),
    )


def parse_tools(raw: Any, path: str) -> tuple[Mapping[str, Any], ...]:
    """The session's tools, kept as sent: the responder reads them, the session echoes them."""
    tools = typed(raw, list, path)
    for i, tool in enumerate(tools):
        typed(tool, dict, f"{path}[{i}]")
    return tuple(tools)


def render_transcription(tr: Transcription | None) -> dict[str, Any] | None:
    """Transcription settings as both dialects echo them: only the fields that are set."""
    if tr is None:
        return None
    return {
        k: v
        for k, v in (("model", tr.model), ("language", tr.language), ("prompt", tr.prompt))
        if v is not None
    }


def parse_max_tokens(value: Any, param: str) -> int | Literal["inf"]:
    """A token limit: an integer, or the string ``"inf"`` for none."""
    if value == "inf":
        return "inf"
    return typed(value, int, param)
