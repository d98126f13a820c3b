"""Call control's stages in the core, event by event and tick by tick: waiting → the line →
speaking → acting; called off, forced, failed. No sockets, no clock: each runs in
milliseconds."""

from __future__ import annotations

import json

from bridge import twilio_stream as tw
from bridge.after_stream import Fallback, Hangup, Transfer
from bridge.call import CallRules, CarryOut, End
from bridge.realtime import events as ev
from bridge.tools.base import speak_exactly
from bridge.tools.call_control import ControlOutcome
from tests.call.support import SID, Conversation, end_call_result, make_call

R1, R2, R3 = "resp_1", "resp_2", "resp_3"


def test_end_call_answers_without_a_new_response_then_says_goodbye_then_hangs_up() -> None:
    c = Conversation()
    c.model_calls("end_call", end_call_result())
    outputs = [e for e in c.of_type("conversation.item.create")]
    assert [json.loads(o["item"]["output"]) for o in outputs] == [
        {"ok": True, "status": "ending the call"}
    ]
    (goodbye,) = c.of_type("response.create")  # the line, not an answer to the output
    assert goodbye["response"]["instructions"] == speak_exactly("Bye now.")
    assert c.call.handoff is not None and c.call.handoff.stage == "speaking"
    c.speak(R2, "bye_item", 300)
    assert c.effects_of(CarryOut) == []  # still playing: 15 frames, no mark echoed
    c.play_out(0.4)
    (carry,) = c.effects_of(CarryOut)
    assert (carry.handoff.kind, carry.handoff.reason) == ("hangup", "agent_hangup")
    assert c.effects_of(End) == []  # acting: the call ends when Twilio has answered
    c.call.handoff_result(ControlOutcome(ok=True, http_status=200, duration_ms=12.0), 0.5)
    c.pump()
    assert [e.reason for e in c.effects_of(End)] == ["agent_hangup"]
    (control,) = c.logs("call_control")
    assert (control["action"], control["ok"], control["http_status"]) == ("hangup", True, 200)


def test_a_handoff_the_model_chose_is_called_off_when_the_caller_talks_over_it() -> None:
    c = Conversation()
    c.model_calls("end_call", end_call_result())
    c.upstream(
        ev.ResponseCreated(R2),
        ev.OutputItemAdded(R2, "bye_item", "message", "assistant"),
        ev.AudioDelta(R2, "bye_item", "EBAQEBAQ" * 1000),
    )
    c.upstream(ev.SpeechStarted("user_1", 0), now=0.1)  # "wait, one more thing!"
    c.upstream(ev.ResponseDone(R2, "cancelled"), now=0.1)
    assert c.effects_of(CarryOut) == [] and c.call.handoff is None
    assert c.logs("handoff_cancelled") == [{"kind": "hangup", "reason": "caller spoke"}]
    assert not c.call.ended


def test_a_keypad_hang_up_goes_ahead_when_the_caller_talks_over_it() -> None:
    c = Conversation()
    c.twilio(tw.Dtmf(SID, "#"))
    (line,) = c.of_type("response.create")
    assert line["response"]["instructions"] == speak_exactly("Bye now.")
    c.upstream(
        ev.ResponseCreated(R1),
        ev.OutputItemAdded(R1, "bye_item", "message", "assistant"),
        ev.AudioDelta(R1, "bye_item", "EBAQEBAQ" * 100),
    )
    c.upstream(ev.SpeechStarted("user_1", 0), ev.ResponseDone(R1, "cancelled"), now=0.05)
    (carry,) = c.effects_of(CarryOut)
    assert carry.handoff.origin == "keypad"
    c.call.handoff_result(None, 0.1)  # no Twilio account: the stream's end does it
    c.pump()
    assert [e.reason for e in c.effects_of(End)] == ["agent_hangup"]
    assert c.logs("call_control")[0]["via"] == "connect_action"
    assert c.call.after_stream == Hangup()


def test_a_keypad_transfer_without_credentials_is_dialled_when_the_stream_ends() -> None:
    c = Conversation()
    c.twilio(tw.Dtmf(SID, "0"))
    c.speak(R1, "hold_item", 100)
    c.play_out(0.2)
    assert len(c.effects_of(CarryOut)) == 1
    c.call.handoff_result(None, 0.3)
    c.pump()
    assert [e.reason for e in c.effects_of(End)] == ["transferred"]
    assert c.call.after_stream == Transfer("operator", "+12125550110")


def test_a_keypad_line_waits_until_the_agent_is_quiet() -> None:
    c = Conversation()
    c.upstream(ev.ResponseCreated(R1))  # the model is talking
    c.twilio(tw.Dtmf(SID, "5"))
    assert c.of_type("response.create") == []
    c.upstream(ev.ResponseDone(R1, "completed"))
    (line,) = c.of_type("response.create")
    assert line["response"]["instructions"] == speak_exactly("We open at nine.")


def test_a_transfer_twilio_rest_refused_is_dialled_when_the_stream_ends() -> None:
    c = Conversation()
    c.twilio(tw.Dtmf(SID, "0"))
    c.speak(R1, "hold_item", 200)
    c.play_out(0.3)
    (carry,) = c.effects_of(CarryOut)
    assert (carry.handoff.kind, carry.handoff.number) == ("transfer", "+12125550110")
    assert c.call.end_reason == "transferred"  # Twilio was asked: that is why it would end
    c.call.handoff_result(ControlOutcome(ok=False, http_status=500, error="boom"), 0.4)
    c.pump()
    assert [e.reason for e in c.effects_of(End)] == ["transferred"]
    assert c.call.after_stream == Transfer("operator", "+12125550110")
    (control,) = c.logs("call_control")
    assert (control["ok"], control["http_status"], control["then"]) == (
        False,
        500,
        "connect_action",
    )


def test_what_follows_the_stream_is_a_hang_up_only_for_a_deliberate_end() -> None:
    for reason, expected in [
        ("agent_hangup", Hangup()),
        ("max_duration", Hangup()),
        ("idle", Hangup()),
        ("caller_hangup", Hangup()),
        ("upstream_failed", Fallback()),
        ("error", Fallback()),
        ("shutdown", Fallback()),
    ]:
        c = Conversation()
        c.call.end(reason)
        assert c.call.after_stream == expected, reason


def test_a_stop_that_beats_twilios_answer_still_ends_the_call_as_transferred() -> None:
    c = Conversation()
    c.twilio(tw.Dtmf(SID, "0"))
    c.speak(R1, "hold_item", 100)
    c.play_out(0.2)
    c.twilio(tw.Stop(SID, "CA"), 0.25)  # Twilio stops the stream as it redirects
    assert [e.reason for e in c.effects_of(End)] == ["caller_hangup"]  # what the stream saw
    c.call.handoff_result(ControlOutcome(ok=True, http_status=200), 0.3)
    c.call.finish(0.3)
    c.pump()
    (ended,) = c.logs("call_ended")
    assert ended["reason"] == "transferred"  # what happened


def test_the_watchdog_acts_when_the_line_never_finishes() -> None:
    c = Conversation(make_call(CallRules(handoff_max_wait_s=20.0)))
    c.twilio(tw.Dtmf(SID, "0"), 1.0)
    c.upstream(ev.ResponseCreated(R1), now=1.0)  # the hold line starts and never ends
    c.tick(20.5)
    assert c.effects_of(CarryOut) == []
    c.tick(21.0)
    (carry,) = c.effects_of(CarryOut)
    assert carry.handoff.kind == "transfer"
    (forced,) = c.logs("handoff_forced")
    assert (forced["stage"], forced["waited_s"]) == ("speaking", 20.0)
    c.tick(30.0)  # acting: never forced twice
    assert len(c.effects_of(CarryOut)) == 1


def test_a_second_handoff_while_one_is_under_way_is_refused_as_a_tool_error() -> None:
    c = Conversation()
    c.twilio(tw.Dtmf(SID, "#"))  # the caller's hang-up is under way
    c.upstream(ev.ResponseCreated(R1))
    call = ev.FunctionCall(R1, "fc_c2", "c2", "end_call", "{}")
    c.upstream(call, ev.ResponseDone(R1, "completed"))
    c.call.tool_finished(call, {}, end_call_result(), 1.0, 0.1)
    c.pump()
    (line,) = c.logs("tool_call")
    assert (line["ok"], line["error"]) == (False, "the call is already being ended")
    assert c.call.handoff is not None and c.call.handoff.handoff.origin == "keypad"


def test_respond_false_answers_the_call_without_asking_for_a_response() -> None:
    c = Conversation()
    c.model_calls("x", end_call_result().__class__("{}", respond=False))
    assert [e["type"] for e in c.sent] == ["conversation.item.create"]
    assert c.call.idle
