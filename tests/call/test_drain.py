"""The one contract between the core and its adapter: `drain` hands over Twilio first, then
upstream control, then upstream audio, then the effects; audio is what goes when the
upstream is slow; a caller who stops reading ends the call."""

from __future__ import annotations

import base64

import orjson

from bridge import twilio_stream as tw
from bridge.call import BargeIn, CallRules, End, Log, Phase
from bridge.realtime import events as ev
from tests.call.support import SID, make_call
from tests.callcore import RecordingSink

PAYLOAD = base64.b64encode(b"\x7f" * 160).decode()


class OrderSink(RecordingSink):
    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    def send_twilio(self, messages: list[str], urgent: bool) -> None:
        self.order += [orjson.loads(m)["event"] for m in messages]
        super().send_twilio(messages, urgent)

    def send_upstream(self, messages: list[str]) -> None:
        self.order += [orjson.loads(m)["type"] for m in messages]
        super().send_upstream(messages)

    def apply(self, effects: list) -> None:
        self.order += [type(e).__name__ for e in effects]
        super().apply(effects)


def test_a_barge_in_leaves_clear_first_then_control_then_audio_then_effects() -> None:
    call = make_call(CallRules())
    call.on_upstream(ev.ResponseCreated("resp_1"), 0.0)
    call.on_upstream(ev.OutputItemAdded("resp_1", "item_a", "message", "assistant"), 0.0)
    call.on_upstream(ev.AudioDelta("resp_1", "item_a", "EBAQEBAQ" * 100), 0.0)
    call.drain(RecordingSink())
    call.on_twilio(tw.Media(SID, PAYLOAD, "inbound"), 0.1)  # audio waiting in the outbox
    call.on_upstream(ev.SpeechStarted("user_1", 0), 0.1)
    sink = OrderSink()
    call.drain(sink)
    assert sink.order[0] == "clear" and sink.urgent == [True]
    assert sink.order[1:] == [
        "conversation.item.truncate",
        "input_audio_buffer.append",
        "TranscriptLine",
        "BargeIn",
    ]
    (barge_in,) = [e for e in sink.effects if isinstance(e, BargeIn)]
    truncate = orjson.loads(sink.upstream[0])
    assert truncate["audio_end_ms"] == barge_in.played_ms <= 100


def test_a_slow_upstream_loses_caller_audio_first_and_never_control() -> None:
    call = make_call(CallRules(upstream_audio_backlog_bytes=64 * 1024))
    sink = RecordingSink()
    sink.upstream_buffered = 64 * 1024 + 1
    for _ in range(3):
        call.on_twilio(tw.Media(SID, PAYLOAD, "inbound"), 0.0)
    assert call.say("Say hello.")  # a response.create: control
    call.drain(sink)
    assert [orjson.loads(m)["type"] for m in sink.upstream] == ["response.create"]
    assert (call.stats.frames_dropped, call.stats.slow_dropped) == (3, 3)
    (slow,) = [e for e in sink.effects if isinstance(e, Log) and e.event == "upstream_slow"]
    assert slow.fields == {"frames_dropped": 1}
    sink.upstream_buffered = 0
    call.on_twilio(tw.Media(SID, PAYLOAD, "inbound"), 0.02)
    call.drain(sink)
    assert orjson.loads(sink.upstream[-1])["type"] == "input_audio_buffer.append"


def test_a_caller_who_stops_reading_ends_the_call_once() -> None:
    call = make_call(CallRules(twilio_write_limit_bytes=1024 * 1024))
    sink = RecordingSink()
    sink.twilio_buffered = 1024 * 1024 + 1
    call.on_upstream(ev.ResponseCreated("resp_1"), 0.0)
    call.on_upstream(ev.AudioDelta("resp_1", "item_a", "EBAQEBAQ" * 20), 0.0)
    call.drain(sink)
    call.on_upstream(ev.AudioDelta("resp_1", "item_a", "EBAQEBAQ" * 20), 0.02)
    call.drain(sink)
    assert [e.reason for e in sink.effects if isinstance(e, End)] == ["protocol_error"]
    logs = [e for e in sink.effects if isinstance(e, Log) and e.event == "twilio_not_reading"]
    assert len(logs) == 1 and logs[0].fields["buffered"] == 1024 * 1024 + 1
    assert call.phase is Phase.ENDING


def test_the_phase_follows_the_facts() -> None:
    call = make_call()
    assert call.phase is Phase.LIVE
    call.upstream_lost(1.0)
    assert call.phase is Phase.RECONNECTING
    call.reconnect_step(1.0)
    call.upstream_reopened(1.1)
    assert call.phase is Phase.LIVE
    call.end("caller_hangup")
    call.end("error")  # the first reason is kept
    assert call.phase is Phase.ENDING and call.end_reason == "caller_hangup"
    call.finish(2.0)
    assert call.phase is Phase.ENDED


def test_too_many_malformed_messages_end_the_call_with_one_reason() -> None:
    call = make_call(CallRules(max_protocol_errors=3))
    sink = RecordingSink()
    for n in range(4):
        call.twilio_rejected(f"bad message {n}")
    call.drain(sink)
    counts = [e.fields["count"] for e in sink.effects if isinstance(e, Log)]
    assert counts == [1, 2, 3, 4]
    assert [e.reason for e in sink.effects if isinstance(e, End)] == ["protocol_error"]
