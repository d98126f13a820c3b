"""`twilio_stream.parse` on the hot messages: what it accepts, and the error for each defect."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge import twilio_stream as tw

SID = "MZ" + "a" * 32


def media(**fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "event": "media",
        "sequenceNumber": "3",
        "streamSid": SID,
        "media": {"track": "inbound", "chunk": "2", "timestamp": "40", "payload": "/w=="},
    }
    message.update(fields)
    return message


def mark(**fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"event": "mark", "streamSid": SID, "mark": {"name": "0.7"}}
    message.update(fields)
    return message


def test_media_and_mark_parse_to_their_fields() -> None:
    assert tw.parse(json.dumps(media())) == tw.Media(SID, "/w==", "inbound")
    assert tw.parse(json.dumps(mark())) == tw.Mark(SID, "0.7")
    untracked = media(media={"payload": "/w=="})
    assert tw.parse(json.dumps(untracked)) == tw.Media(SID, "/w==", "inbound")
    odd_track = media(media={"payload": "/w==", "track": 5})
    assert tw.parse(json.dumps(odd_track)) == tw.Media(SID, "/w==", "5")


DEFECTS = [
    (media(media=None), "'media' message without a 'media' object"),
    (media(media="/w=="), "'media' message without a 'media' object"),
    (media(media=["payload"]), "'media' message without a 'media' object"),
    (media(media={"track": "inbound"}), "media: 'payload' missing or not a string"),
    (media(media={"payload": 5}), "media: 'payload' missing or not a string"),
    (media(streamSid=None), "media: 'streamSid' missing or not a string"),
    ({k: v for k, v in media().items() if k != "streamSid"}, "media: 'streamSid' missing"),
    ({k: v for k, v in media().items() if k != "media"}, "without a 'media' object"),
    (mark(mark=7), "'mark' message without a 'mark' object"),
    (mark(mark={"name": None}), "mark: 'name' missing or not a string"),
    (mark(mark={}), "mark: 'name' missing or not a string"),
    (mark(streamSid=12), "mark: 'streamSid' missing or not a string"),
    ({k: v for k, v in mark().items() if k != "streamSid"}, "mark: 'streamSid' missing"),
]


@pytest.mark.parametrize(("message", "error"), DEFECTS)
def test_each_defect_of_a_hot_message_is_named(message: dict[str, Any], error: str) -> None:
    with pytest.raises(tw.StreamProtocolError, match=error):
        tw.parse(json.dumps(message))


def test_outbound_messages_are_the_heads_and_tail_joined() -> None:
    assert json.loads(tw.media_head(SID) + "/w==" + tw.MESSAGE_TAIL) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": "/w=="},
    }
    assert json.loads(tw.mark_head(SID) + "1.4" + tw.MESSAGE_TAIL) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "1.4"},
    }


class Reader:
    """Records what `tw.feed` hands over, and how."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, ...]] = []

    def on_media(self, stream_sid: str, payload: str, timestamp: object, now: float) -> None:
        self.got.append(("on_media", stream_sid, payload, timestamp, now))

    def on_mark(self, stream_sid: str, name: str, now: float) -> None:
        self.got.append(("on_mark", stream_sid, name, now))

    def on_twilio(self, event: tw.TwilioEvent, now: float) -> None:
        self.got.append(("on_twilio", event, now))


def test_feed_hands_the_usual_media_and_mark_over_as_fields_and_the_rest_as_parse_gives_it() -> (
    None
):
    reader = Reader()
    for message in (
        media(),
        mark(),
        media(media={"payload": "/w=="}),  # no track: the general path, as parse reads it
        media(media={"payload": "/w==", "track": "outbound"}),
        {"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "5"}},
    ):
        tw.feed(json.dumps(message), reader, 1.5)
    assert reader.got == [
        ("on_media", SID, "/w==", "40", 1.5),
        ("on_mark", SID, "0.7", 1.5),
        ("on_twilio", tw.Media(SID, "/w==", "inbound"), 1.5),
        ("on_twilio", tw.Media(SID, "/w==", "outbound"), 1.5),
        ("on_twilio", tw.Dtmf(SID, "5"), 1.5),
    ]


@pytest.mark.parametrize(("message", "error"), DEFECTS)
def test_feed_names_each_defect_as_parse_does_and_hands_nothing_over(
    message: dict[str, Any], error: str
) -> None:
    reader = Reader()
    with pytest.raises(tw.StreamProtocolError, match=error):
        tw.feed(json.dumps(message), reader, 0.0)
    assert reader.got == []


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"media"', '{"streamSid": 1}', "x" * 70000])
def test_feed_refuses_what_parse_refuses(raw: str) -> None:
    with pytest.raises(tw.StreamProtocolError) as parsed:
        tw.parse(raw)
    reader = Reader()
    with pytest.raises(tw.StreamProtocolError) as fed:
        tw.feed(raw, reader, 0.0)
    assert str(fed.value) == str(parsed.value) and reader.got == []
