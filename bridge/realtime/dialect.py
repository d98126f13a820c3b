"""GA and beta Realtime dialects: the one place that knows wire names and shapes.

`Dialect.decode` turns a server message into an event of `events.py`; the encoders build the
client messages the call needs. The call logic holds a `Dialect` and never asks which one it
is. Encoders return JSON text ready to send; the audio append, sent 50 times a second, is
built as a string since base64 needs no escaping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

import orjson

from bridge.audio_format import AudioFormat
from bridge.realtime import events as ev

DialectName = Literal["ga", "beta"]


class UpstreamProtocolError(ValueError):
    """A server message that is not valid JSON or lacks a field the bridge relies on."""


def _s(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise UpstreamProtocolError(f"{d.get('type')}: '{key}' missing or not a string")
    return value


def _item(d: dict[str, Any]) -> dict[str, Any]:
    item = d.get("item")
    if not isinstance(item, dict):
        raise UpstreamProtocolError(f"{d.get('type')}: 'item' missing")
    return item


def _function_calls(response: dict[str, Any]) -> tuple[ev.FunctionCall, ...]:
    calls = []
    for out in response.get("output") or ():
        if isinstance(out, dict) and out.get("type") == "function_call":
            calls.append(
                ev.FunctionCall(
                    response_id=str(response.get("id", "")),
                    item_id=str(out.get("id", "")),
                    call_id=str(out.get("call_id", "")),
                    name=str(out.get("name", "")),
                    arguments=str(out.get("arguments", "")),
                    status=str(out["status"]) if out.get("status") else None,
                )
            )
    return tuple(calls)


def _response_done(d: dict[str, Any]) -> ev.ResponseDone:
    response = d.get("response")
    if not isinstance(response, dict):
        raise UpstreamProtocolError("response.done: 'response' missing")
    details = response.get("status_details") or {}
    reason = details.get("reason") if isinstance(details, dict) else None
    error = details.get("error") if isinstance(details, dict) else None
    error = error if isinstance(error, dict) else {}
    return ev.ResponseDone(
        response_id=str(response.get("id", "")),
        status=str(response.get("status", "completed")),
        reason=reason,
        error_type=_opt(error.get("type")),
        error_code=_opt(error.get("code")),
        error_message=_opt(error.get("message")),
        function_calls=_function_calls(response),
    )


def _opt(value: object) -> str | None:
    return str(value) if value is not None else None


def _rate_limits(d: dict[str, Any]) -> ev.RateLimits:
    limits = []
    for entry in d.get("rate_limits") or ():
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            limits.append(
                ev.RateLimit(
                    entry["name"],
                    float(entry.get("limit") or 0),
                    float(entry.get("remaining") or 0),
                    float(entry.get("reset_seconds") or 0),
                )
            )
    return ev.RateLimits(tuple(limits))


def _error(d: dict[str, Any]) -> ev.UpstreamError:
    err = d.get("error") if isinstance(d.get("error"), dict) else {}
    return ev.UpstreamError(
        code=err.get("code"),
        message=str(err.get("message", "")),
        type=err.get("type"),
        event_id=err.get("event_id"),
    )


def _item_added(d: dict[str, Any]) -> ev.ItemAdded:
    item = _item(d)
    return ev.ItemAdded(
        item_id=_s(item, "id"),
        previous_item_id=d.get("previous_item_id"),
        type=str(item.get("type", "message")),
        role=item.get("role"),
    )


def _output_item_added(d: dict[str, Any]) -> ev.OutputItemAdded:
    item = _item(d)
    return ev.OutputItemAdded(
        response_id=_s(d, "response_id"),
        item_id=_s(item, "id"),
        type=str(item.get("type", "message")),
        role=item.get("role"),
        name=item.get("name"),
    )


_Decoder = Callable[[dict[str, Any]], ev.ServerEvent]
_loads = orjson.loads

# Events named the same in both dialects.
_COMMON: dict[str, _Decoder] = {
    "session.created": lambda d: ev.SessionCreated(),
    "session.updated": lambda d: ev.SessionUpdated(),
    "input_audio_buffer.speech_started": lambda d: ev.SpeechStarted(
        d.get("item_id"), d.get("audio_start_ms")
    ),
    "input_audio_buffer.speech_stopped": lambda d: ev.SpeechStopped(
        d.get("item_id"), d.get("audio_end_ms")
    ),
    "input_audio_buffer.committed": lambda d: ev.InputCommitted(
        _s(d, "item_id"), d.get("previous_item_id")
    ),
    "conversation.item.input_audio_transcription.completed": lambda d: ev.InputTranscript(
        _s(d, "item_id"), str(d.get("transcript", ""))
    ),
    "conversation.item.input_audio_transcription.failed": lambda d: ev.InputTranscriptFailed(
        _s(d, "item_id"), str((d.get("error") or {}).get("message", ""))
    ),
    "response.created": lambda d: ev.ResponseCreated(str((d.get("response") or {}).get("id", ""))),
    "response.output_item.added": _output_item_added,
    "response.function_call_arguments.done": lambda d: ev.FunctionCall(
        response_id=str(d.get("response_id", "")),
        item_id=str(d.get("item_id", "")),
        call_id=_s(d, "call_id"),
        name=str(d.get("name", "")),
        arguments=str(d.get("arguments", "")),
    ),
    "response.done": _response_done,
    "conversation.item.truncated": lambda d: ev.ItemTruncated(
        _s(d, "item_id"), int(d.get("audio_end_ms", 0))
    ),
    "error": _error,
    "rate_limits.updated": _rate_limits,
    "input_audio_buffer.timeout_triggered": lambda d: ev.IdleTimeout(),
}


class Reader(Protocol):
    """Who `Dialect.feed` hands each server message to (the call core)."""

    def on_delta(self, response_id: str, item_id: str, audio: str, now: float) -> None: ...

    def on_upstream(self, event: ev.ServerEvent, now: float) -> None: ...


def _audio_delta(d: dict[str, Any]) -> ev.AudioDelta:
    # Checked in one expression, `_s` names the field only on failure (`Dialect.feed` takes
    # the usual deltas without building one).
    response_id, item_id, delta = d.get("response_id"), d.get("item_id"), d.get("delta")
    if type(response_id) is str and type(item_id) is str and type(delta) is str:
        return ev.AudioDelta(response_id, item_id, delta)
    return ev.AudioDelta(_s(d, "response_id"), _s(d, "item_id"), _s(d, "delta"))


def _audio_done(d: dict[str, Any]) -> ev.AudioDone:
    return ev.AudioDone(_s(d, "response_id"), _s(d, "item_id"))


def _transcript_delta(d: dict[str, Any]) -> ev.TranscriptDelta:
    return ev.TranscriptDelta(_s(d, "item_id"), str(d.get("delta", "")))


def _transcript_done(d: dict[str, Any]) -> ev.TranscriptDone:
    return ev.TranscriptDone(_s(d, "response_id"), _s(d, "item_id"), str(d.get("transcript", "")))


_GA: dict[str, _Decoder] = {
    **_COMMON,
    "conversation.item.added": _item_added,
    "response.output_audio.delta": _audio_delta,
    "response.output_audio.done": _audio_done,
    "response.output_audio_transcript.done": _transcript_done,
    "response.output_audio_transcript.delta": _transcript_delta,
}

_BETA: dict[str, _Decoder] = {
    **_COMMON,
    "conversation.item.created": _item_added,
    "response.audio.delta": _audio_delta,
    "response.audio.done": _audio_done,
    "response.audio_transcript.done": _transcript_done,
    "response.audio_transcript.delta": _transcript_delta,
}


_CREATE_PREFIX = "create_"  # the event_id of a conversation.item.create: "create_<item id>"


def _dumps(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


class Dialect:
    """Translation between the bridge's vocabulary and one wire dialect."""

    def __init__(self, name: DialectName) -> None:
        self.name: DialectName = name
        self._decoders = _GA if name == "ga" else _BETA
        self._delta_type = "response.output_audio.delta" if name == "ga" else "response.audio.delta"

    # Server → bridge ---------------------------------------------------------------------

    def feed(self, raw: str | bytes, reader: Reader, now: float) -> None:
        """Parse one server message and hand it to `reader`, with `now`: an audio delta in
        its usual shape to `on_delta` as its fields (no object is built: it is most of the
        traffic), any other message to `on_upstream` as `decode` gives it. Raises
        `UpstreamProtocolError` as `decode` does, before `reader` sees anything."""
        try:
            data = _loads(raw)
            kind = data["type"]
            if kind == self._delta_type:
                response_id, item_id, delta = data["response_id"], data["item_id"], data["delta"]
        except (KeyError, TypeError, orjson.JSONDecodeError):  # `decode` says what is wrong
            reader.on_upstream(self.decode(raw), now)
            return
        if (
            kind == self._delta_type
            and type(response_id) is str
            and type(item_id) is str
            and type(delta) is str
        ):
            reader.on_delta(response_id, item_id, delta, now)
            return
        reader.on_upstream(self._event(data), now)

    def decode(self, raw: str | bytes) -> ev.ServerEvent:
        """Parse one server message. Raises `UpstreamProtocolError` if it is malformed."""
        try:
            data = _loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(f"malformed JSON from upstream: {exc}") from None
        return self._event(data)

    def _event(self, data: Any) -> ev.ServerEvent:
        kind = data.get("type") if isinstance(data, dict) else None
        if not isinstance(kind, str):
            raise UpstreamProtocolError("upstream message without a 'type'")
        decoder = self._decoders.get(kind)
        if decoder is None:
            return ev.Ignored(kind)
        try:
            return decoder(data)
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, UpstreamProtocolError):
                raise
            raise UpstreamProtocolError(f"{kind}: {exc}") from None

    # Bridge → server ---------------------------------------------------------------------

    def session_update(self, cfg: ev.SessionConfig) -> str:
        td = cfg.turn_detection
        turn: dict[str, Any] = {"type": td.type}
        if td.type == "server_vad":
            for key in ("threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
                value = getattr(td, key)
                if value is not None:
                    turn[key] = value
        elif td.eagerness is not None:
            turn["eagerness"] = td.eagerness
        turn["create_response"] = td.create_response
        turn["interrupt_response"] = td.interrupt_response
        transcription: dict[str, Any] | None = None
        if cfg.transcription_model:
            transcription = {"model": cfg.transcription_model}
            if cfg.transcription_language:
                transcription["language"] = cfg.transcription_language
        tools = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
            }
            for t in cfg.tools
        ]
        session: dict[str, Any]
        if self.name == "ga":
            fmt = (
                {"type": "audio/pcm", "rate": 24000}
                if cfg.audio_format == AudioFormat.PCM16
                else {"type": "audio/pcmu"}
            )
            audio_in: dict[str, Any] = {"format": fmt, "turn_detection": turn}
            if cfg.noise_reduction is not None:
                off = cfg.noise_reduction == "off"
                audio_in["noise_reduction"] = None if off else {"type": cfg.noise_reduction}
            if transcription:
                audio_in["transcription"] = transcription
            audio_out: dict[str, Any] = {"format": fmt, "voice": cfg.voice}
            if cfg.speed is not None:
                audio_out["speed"] = cfg.speed
            session = {
                "type": "realtime",
                "output_modalities": ["audio"],
                "instructions": cfg.instructions,
                "audio": {"input": audio_in, "output": audio_out},
            }
            if cfg.max_output_tokens is not None:
                session["max_output_tokens"] = cfg.max_output_tokens
        else:
            fmt_name = "pcm16" if cfg.audio_format == AudioFormat.PCM16 else "g711_ulaw"
            session = {
                "modalities": ["audio", "text"],
                "instructions": cfg.instructions,
                "voice": cfg.voice,
                "input_audio_format": fmt_name,
                "output_audio_format": fmt_name,
                "turn_detection": turn,
            }
            if transcription:
                session["input_audio_transcription"] = transcription
            if cfg.speed is not None:
                session["speed"] = cfg.speed
            if cfg.max_output_tokens is not None:
                session["max_response_output_tokens"] = cfg.max_output_tokens
        if tools:
            session["tools"] = tools
            session["tool_choice"] = cfg.tool_choice
        return _dumps({"type": "session.update", "session": session})

    @staticmethod
    def append_audio(audio_b64: str) -> str:
        return '{"type":"input_audio_buffer.append","audio":"' + audio_b64 + '"}'

    @staticmethod
    def truncate(item_id: str, audio_end_ms: int) -> str:
        return _dumps(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": int(audio_end_ms),
            }
        )

    @staticmethod
    def cancel_response() -> str:
        return '{"type":"response.cancel"}'

    @staticmethod
    def create_response(instructions: str | None = None) -> str:
        if instructions is None:
            return '{"type":"response.create"}'
        return _dumps({"type": "response.create", "response": {"instructions": instructions}})

    @staticmethod
    def item_created_by(event_id: str | None) -> str | None:
        """The item a `conversation.item.create` of ours carried, from the `event_id` the
        service echoes in an `error` about it; None for any other event."""
        if event_id and event_id.startswith(_CREATE_PREFIX):
            return event_id[len(_CREATE_PREFIX) :]
        return None

    @staticmethod
    def user_text(text: str, item_id: str) -> str:
        return _dumps(
            {
                "type": "conversation.item.create",
                "event_id": _CREATE_PREFIX + item_id,
                "item": {
                    "id": item_id,
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                },
            }
        )

    def assistant_text(self, text: str, item_id: str) -> str:
        """Replay an assistant turn as text (session renewal after a reconnect)."""
        part = "output_text" if self.name == "ga" else "text"
        return _dumps(
            {
                "type": "conversation.item.create",
                "event_id": _CREATE_PREFIX + item_id,
                "item": {
                    "id": item_id,
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": part, "text": text}],
                },
            }
        )

    @staticmethod
    def function_output(call_id: str, output: str, item_id: str) -> str:
        return _dumps(
            {
                "type": "conversation.item.create",
                "event_id": _CREATE_PREFIX + item_id,
                "item": {
                    "id": item_id,
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": output,
                },
            }
        )
