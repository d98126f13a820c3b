"""What the call core tells a recorder: every caller frame with its time and timestamp, every
agent frame with the mark sent after it, the echoes that counted as played, and the clear."""

from __future__ import annotations

import base64
from typing import Any

from bridge import twilio_stream as tw
from bridge.audio import make_pipeline
from bridge.call import Call
from bridge.realtime import events as ev
from bridge.realtime.dialect import Dialect
from bridge.realtime.events import SessionConfig
from tests.callcore import drain

SID = "MZ00000000000000000000000000000001"


class Facts:
    """A recorder that keeps what it is told, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def caller(self, payload_b64: str, now: float, timestamp: object = None) -> None:
        self.seen.append(("caller", payload_b64, now, timestamp))

    def agent_sent(self, mark: str, payload_b64: str) -> None:
        self.seen.append(("sent", mark, len(base64.b64decode(payload_b64))))

    def agent_played(self, mark: str, now: float) -> None:
        self.seen.append(("played", mark, now))

    def agent_cleared(self) -> None:
        self.seen.append(("cleared",))


def call_with(recorder: Facts | None) -> Call:
    call = Call(
        stream_sid=SID,
        call_sid="CA00000000000000000000000000000001",
        dialect=Dialect("ga"),
        audio=make_pipeline("pcmu"),
        session=SessionConfig(instructions="be brief", audio_format="pcmu"),
        greeting=None,
        started_at=0.0,
        recorder=recorder,
    )
    call.upstream_opened(0.0)
    drain(call)
    return call


def test_the_recorder_hears_every_audio_fact_in_wire_order() -> None:
    facts = Facts()
    call = call_with(facts)
    call.on_twilio(tw.Media(SID, "/w==", "inbound", "20"), 0.021)
    call.on_twilio(tw.Media(SID, "/w==", "outbound"), 0.022)  # not the caller's track
    call.on_upstream(ev.ResponseCreated("r1"), 0.03)
    call.on_upstream(ev.AudioDelta("r1", "i1", base64.b64encode(b"\x10" * 480).decode()), 0.03)
    twilio, _, _ = drain(call)
    marks = [m["mark"]["name"] for m in twilio if m["event"] == "mark"]
    frames = [m["media"]["payload"] for m in twilio if m["event"] == "media"]
    assert len(marks) == len(frames) == 3
    call.on_twilio(tw.Mark(SID, marks[0]), 0.05)
    call.on_upstream(ev.SpeechStarted("u1", 40), 0.06)  # barge-in: the rest is cleared
    call.on_twilio(tw.Mark(SID, marks[1]), 0.061)  # the clear's echo: not played
    assert facts.seen == [
        ("caller", "/w==", 0.021, "20"),
        *[("sent", mark, 160) for mark in marks],
        ("played", marks[0], 0.05),
        ("cleared",),
    ]


def test_without_a_recorder_the_call_is_the_same() -> None:
    def run(recorder: Facts | None) -> list[Any]:
        call = call_with(recorder)
        call.on_twilio(tw.Media(SID, "/w==", "inbound", "20"), 0.02)
        call.on_upstream(ev.ResponseCreated("r1"), 0.03)
        delta = base64.b64encode(b"\x10" * 320).decode()
        call.on_upstream(ev.AudioDelta("r1", "i1", delta), 0.03)
        return list(drain(call)[:2])

    assert run(None) == run(Facts())
