"""Client events of the Realtime protocol as small immutable records.

:func:`parse_client_event` turns one WebSocket text message into one of these records, or
raises :class:`~bridge.engine.errors.ProtocolError` with the code the service would send.
Dialect-specific payloads (``session``, ``item``) are kept raw here and parsed by the
session through its :class:`~bridge.engine.dialect.EngineDialect`, which knows their shape.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from bridge.engine._fields import one_of, require, typed, unknown_keys
from bridge.engine.errors import ProtocolError


@dataclass(frozen=True)
class ClientEvent:
    """Base of all client events; ``event_id`` is the client's own id, if it set one."""

    event_id: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class SessionUpdate(ClientEvent):
    session: Mapping[str, Any]


@dataclass(frozen=True)
class AudioAppend(ClientEvent):
    audio: bytes


@dataclass(frozen=True)
class AudioCommit(ClientEvent):
    pass


@dataclass(frozen=True)
class AudioClear(ClientEvent):
    pass


@dataclass(frozen=True)
class OutputAudioClear(ClientEvent):
    pass


@dataclass(frozen=True)
class ItemCreate(ClientEvent):
    item: Mapping[str, Any]
    previous_item_id: str | None = None


@dataclass(frozen=True)
class ItemTruncate(ClientEvent):
    item_id: str
    content_index: int
    audio_end_ms: int


@dataclass(frozen=True)
class ItemDelete(ClientEvent):
    item_id: str


@dataclass(frozen=True)
class ItemRetrieve(ClientEvent):
    item_id: str


@dataclass(frozen=True)
class ResponseCreate(ClientEvent):
    response: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResponseCancel(ClientEvent):
    response_id: str | None = None


CLIENT_EVENT_TYPES: tuple[str, ...] = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "output_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
)


def decode_message(message: str | bytes) -> dict[str, Any]:
    """One WebSocket message → a JSON object, or the service's error for anything else."""
    try:
        event = orjson.loads(message)
    except orjson.JSONDecodeError:
        raise ProtocolError(
            "invalid_json",
            "The server could not parse the event: it is not valid JSON.",
        ) from None
    if not isinstance(event, dict):
        raise ProtocolError("invalid_json", "The event must be a JSON object.")
    return event


def parse_client_event(event: Mapping[str, Any]) -> ClientEvent:
    """A decoded client event → its record. Unknown keys at the top level are refused."""
    kind = typed(require(event, "type", ""), str, "type")
    one_of(kind, CLIENT_EVENT_TYPES, "type")
    event_id = typed(event.get("event_id"), str, "event_id", nullable=True)
    parse = _PARSERS[kind]
    return parse(event, event_id)


def _keys(event: Mapping[str, Any], *allowed: str) -> None:
    unknown_keys(event, ("type", "event_id", *allowed), "")


def _session_update(e: Mapping[str, Any], eid: str | None) -> ClientEvent:
    _keys(e, "session")
    return SessionUpdate(typed(require(e, "session", ""), dict, "session"), event_id=eid)


def _append(e: Mapping[str, Any], eid: str | None) -> ClientEvent:
    _keys(e, "audio")
    text = typed(require(e, "audio", ""), str, "audio")
    try:
        audio = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            "invalid_value", "Invalid value for 'audio': not valid base64.", "audio"
        ) from None
    return AudioAppend(audio, event_id=eid)


def _plain(cls: type[ClientEvent]) -> Any:
    def parse(e: Mapping[str, Any], eid: str | None) -> ClientEvent:
        _keys(e)
        return cls(event_id=eid)

    return parse


def _item_create(e: Mapping[str, Any], eid: str | None) -> ClientEvent:
    _keys(e, "item", "previous_item_id")
    return ItemCreate(
        typed(require(e, "item", ""), dict, "item"),
        typed(e.get("previous_item_id"), str, "previous_item_id", nullable=True),
        event_id=eid,
    )


def _truncate(e: Mapping[str, Any], eid: str | None) -> ClientEvent:
    _keys(e, "item_id", "content_index", "audio_end_ms")
    audio_end_ms = typed(require(e, "audio_end_ms", ""), int, "audio_end_ms")
    if audio_end_ms < 0:
        raise ProtocolError(
            "integer_below_min_value",
            f"Invalid 'audio_end_ms': integer below minimum value. Expected a value >= 0, "
            f"but got {audio_end_ms} instead.",
            "audio_end_ms",
        )
    return ItemTruncate(
        typed(require(e, "item_id", ""), str, "item_id"),
        typed(require(e, "content_index", ""), int, "content_index"),
        audio_end_ms,
        event_id=eid,
    )


def _item_id_only(cls: type[ItemDelete] | type[ItemRetrieve]) -> Any:
    def parse(e: Mapping[str, Any], eid: str | None) -> ClientEvent:
        _keys(e, "item_id")
        return cls(typed(require(e, "item_id", ""), str, "item_id"), event_id=eid)

    return parse


def _response_create(e: Mapping[str, Any], eid: str | None) -> ClientEvent:
    _keys(e, "response")
    response = typed(e.get("response"), dict, "response", nullable=True)
    return ResponseCreate(response or {}, event_id=eid)


def _response_cancel(e: Mapping[str, Any], eid: str | None) -> ClientEvent:
    _keys(e, "response_id")
    return ResponseCancel(
        typed(e.get("response_id"), str, "response_id", nullable=True), event_id=eid
    )


_PARSERS = {
    "session.update": _session_update,
    "input_audio_buffer.append": _append,
    "input_audio_buffer.commit": _plain(AudioCommit),
    "input_audio_buffer.clear": _plain(AudioClear),
    "output_audio_buffer.clear": _plain(OutputAudioClear),
    "conversation.item.create": _item_create,
    "conversation.item.truncate": _truncate,
    "conversation.item.delete": _item_id_only(ItemDelete),
    "conversation.item.retrieve": _item_id_only(ItemRetrieve),
    "response.create": _response_create,
    "response.cancel": _response_cancel,
}
