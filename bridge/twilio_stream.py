"""Twilio Media Streams messages: parse what Twilio sends, build what we may send back.

Pure functions, no I/O. Parsing is strict about shape (a malformed message is a
`StreamProtocolError` naming the problem) and lenient about what Twilio does not document
(frame sizes, extra fields). Outbound messages are built as strings directly: base64 needs
no JSON escaping, and this runs for every 20 ms frame of every call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

# Twilio's own messages are a few hundred bytes; a media frame of 20 ms is ~400. A cap far
# above any legitimate message stops a peer from making us parse megabytes.
MAX_MESSAGE_BYTES = 64 * 1024
_SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_loads = orjson.loads


class StreamProtocolError(ValueError):
    """A message that breaks the Media Streams protocol (Twilio would raise 31951)."""


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    encoding: str
    sample_rate: int
    channels: int
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a microsecond per frame
class Media:
    stream_sid: str
    payload: str
    track: str = "inbound"
    # Twilio's `timestamp` (ms from the stream's start), as sent: only a recording reads it.
    timestamp: object = field(default=None, compare=False)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a microsecond per frame
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    call_sid: str | None


@dataclass(frozen=True, slots=True)
class Unknown:
    event: str


TwilioEvent = Connected | Start | Media | Mark | Dtmf | Stop | Unknown


def _obj(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise StreamProtocolError(f"'{msg.get('event')}' message without a '{key}' object")
    return value


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise StreamProtocolError(f"{where}: '{key}' missing or not a string")
    return value


def _sid(obj: dict[str, Any], key: str, where: str) -> str:
    value = _str(obj, key, where)
    if not _SID.match(value):
        raise StreamProtocolError(f"{where}: '{key}' is not a valid SID")
    return value


def _refused(msg: dict[str, Any], event: str, key: str) -> StreamProtocolError:
    """Why the fast path refused a `media` or `mark` message: its object (named as the
    event), that object's string field `key`, or else the streamSid."""
    obj = msg.get(event)
    if type(obj) is not dict:
        return StreamProtocolError(f"'{event}' message without a '{event}' object")
    if type(obj.get(key)) is not str:
        return StreamProtocolError(f"{event}: '{key}' missing or not a string")
    return StreamProtocolError(f"{event}: 'streamSid' missing or not a string")


class Reader(Protocol):
    """Who `feed` hands each message to (the call core): the two messages of every 20 ms as
    their fields, any other as its event."""

    def on_media(self, stream_sid: str, payload: str, timestamp: object, now: float) -> None:
        """An inbound `media`: `timestamp` as Twilio sent it (ms from the stream's start)."""
        ...

    def on_mark(self, stream_sid: str, name: str, now: float) -> None: ...

    def on_twilio(self, event: TwilioEvent, now: float) -> None: ...


def feed(raw: str | bytes, reader: Reader, now: float) -> None:
    """Parse one message and hand it to `reader`, with `now`. An inbound `media` and a `mark`
    in the shape Twilio sends them go to `on_media` and `on_mark` as their fields (no object
    is built for them: they are 100 messages a second per call); any other message, and
    these in any other shape, go to `on_twilio` as `parse` gives them. Raises
    `StreamProtocolError` as `parse` does, before `reader` sees anything."""
    if len(raw) > MAX_MESSAGE_BYTES:
        parse(raw)  # raises
    try:
        msg = _loads(raw)
        event = msg["event"]
        if event == "media":
            media = msg["media"]
            payload, sid, track = media["payload"], msg["streamSid"], media["track"]
        elif event == "mark":
            name, sid = msg["mark"]["name"], msg["streamSid"]
    except (KeyError, TypeError, orjson.JSONDecodeError):  # `parse` says what is wrong
        reader.on_twilio(parse(raw), now)
        return
    if event == "media":
        if track == "inbound" and type(payload) is str and type(sid) is str:
            reader.on_media(sid, payload, media.get("timestamp"), now)
            return
    elif event == "mark" and type(name) is str and type(sid) is str:
        reader.on_mark(sid, name, now)
        return
    reader.on_twilio(_event(msg), now)


def parse(raw: str | bytes) -> TwilioEvent:
    """Parse one Media Streams message. Raises `StreamProtocolError` on anything malformed."""
    return _event(_load(raw))


def _load(raw: str | bytes) -> Any:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise StreamProtocolError(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return _loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StreamProtocolError(f"malformed JSON: {exc}") from None


def _event(msg: Any) -> TwilioEvent:
    if type(msg) is not dict:  # orjson gives exactly dict for a JSON object
        raise StreamProtocolError("message is not a JSON object")
    event = msg.get("event")
    if event == "media":  # subscripts, and the checks only on failure
        try:
            media = msg["media"]  # orjson gives dict, list, str or scalars: only a dict
            payload = media["payload"]  # takes a str key, so this line proves `media` is one
            sid = msg["streamSid"]
        except (KeyError, TypeError):
            raise _refused(msg, "media", "payload") from None
        if type(payload) is not str or type(sid) is not str:
            raise _refused(msg, "media", "payload")
        track = media.get("track", "inbound")
        # No SID regex on the hot path: the call compares it with the one `start` validated.
        return Media(
            sid, payload, track if type(track) is str else str(track), media.get("timestamp")
        )
    if event == "mark":  # an echo for every frame played: as media
        try:
            name = msg["mark"]["name"]
            sid = msg["streamSid"]
        except (KeyError, TypeError):
            raise _refused(msg, "mark", "name") from None
        if type(name) is not str or type(sid) is not str:
            raise _refused(msg, "mark", "name")
        return Mark(sid, name)
    if event == "start":
        start = _obj(msg, "start")
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict):
            raise StreamProtocolError("start: 'mediaFormat' is not an object")
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise StreamProtocolError("start: 'customParameters' is not an object")
        tracks = start.get("tracks") or ["inbound"]
        return Start(
            stream_sid=_sid(start, "streamSid", "start"),
            call_sid=_sid(start, "callSid", "start"),
            account_sid=str(start.get("accountSid", "")),
            tracks=tuple(str(t) for t in tracks) if isinstance(tracks, list) else ("inbound",),
            encoding=str(fmt.get("encoding", "audio/x-mulaw")),
            sample_rate=int(fmt.get("sampleRate", 8000)),
            channels=int(fmt.get("channels", 1)),
            custom_parameters={str(k): str(v) for k, v in params.items()},
        )
    if event == "dtmf":
        digit = _str(_obj(msg, "dtmf"), "digit", "dtmf")
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise StreamProtocolError(f"dtmf: invalid digit {digit!r}")
        return Dtmf(_sid(msg, "streamSid", "dtmf"), digit)
    if event == "stop":
        stop = msg.get("stop") if isinstance(msg.get("stop"), dict) else {}
        return Stop(_sid(msg, "streamSid", "stop"), stop.get("callSid"))
    if event == "connected":
        return Connected(str(msg.get("protocol", "")), str(msg.get("version", "")))
    if not isinstance(event, str):
        raise StreamProtocolError("message without an 'event' string")
    return Unknown(event[:64])


# Outbound: the only three messages a server may send on a bidirectional stream.


def media_head(stream_sid: str) -> str:
    """A `media` message up to its payload: head + payload + `MESSAGE_TAIL` is the message."""
    return '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'


def mark_head(stream_sid: str) -> str:
    """A `mark` message up to its name: head + name + `MESSAGE_TAIL` is the message."""
    return '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'


MESSAGE_TAIL = '"}}'


def clear_message(stream_sid: str) -> str:
    return '{"event":"clear","streamSid":"' + stream_sid + '"}'
