"""`Dialect.feed`: an audio delta in its usual shape goes to the call core as its fields, every
other message as `Dialect.decode` gives it, and what `decode` refuses is refused the same."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.realtime import events as ev
from bridge.realtime.dialect import Dialect, UpstreamProtocolError

DELTA = {"response_id": "resp_1", "item_id": "item_1", "output_index": 0, "delta": "/w=="}


class Reader:
    def __init__(self) -> None:
        self.got: list[tuple[Any, ...]] = []

    def on_delta(self, response_id: str, item_id: str, audio: str, now: float) -> None:
        self.got.append(("on_delta", response_id, item_id, audio, now))

    def on_upstream(self, event: ev.ServerEvent, now: float) -> None:
        self.got.append(("on_upstream", event, now))


@pytest.mark.parametrize(
    ("name", "delta_type"),
    [("ga", "response.output_audio.delta"), ("beta", "response.audio.delta")],
)
def test_a_delta_goes_over_as_its_fields_and_the_rest_as_decode_gives_it(
    name: str, delta_type: str
) -> None:
    dialect, reader = Dialect(name), Reader()  # type: ignore[arg-type]
    odd = {**DELTA, "type": delta_type, "item_id": 7}  # a defect: decode names it
    speech = {"type": "input_audio_buffer.speech_started", "item_id": "u1", "audio_start_ms": 5}
    for message in ({**DELTA, "type": delta_type}, speech, {"type": "some.future.event"}):
        dialect.feed(json.dumps(message), reader, 2.0)
    assert reader.got == [
        ("on_delta", "resp_1", "item_1", "/w==", 2.0),
        ("on_upstream", dialect.decode(json.dumps(speech)), 2.0),
        ("on_upstream", ev.Ignored("some.future.event"), 2.0),
    ]
    with pytest.raises(UpstreamProtocolError) as decoded:
        dialect.decode(json.dumps(odd))
    with pytest.raises(UpstreamProtocolError) as fed:
        dialect.feed(json.dumps(odd), Reader(), 0.0)
    assert str(fed.value) == str(decoded.value)


@pytest.mark.parametrize("raw", ["{not json", "[1]", '{"delta": "/w=="}', '{"type": 5}', "7"])
def test_feed_refuses_what_decode_refuses_and_hands_nothing_over(raw: str) -> None:
    dialect, reader = Dialect("ga"), Reader()
    with pytest.raises(UpstreamProtocolError) as decoded:
        dialect.decode(raw)
    with pytest.raises(UpstreamProtocolError) as fed:
        dialect.feed(raw, reader, 0.0)
    assert str(fed.value) == str(decoded.value) and reader.got == []
