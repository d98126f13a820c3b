"""Answering-machine detection in the core, event by event: a call the bridge placed stays quiet
(its session does not answer speech by itself, no greeting) until Twilio says who answered; a
person then hears the greeting with the persona's turn detection back, a machine the voicemail
and the hang-up, a fax line the hang-up. No sockets, no clock."""

from __future__ import annotations

import pytest

from bridge.after_stream import Hangup
from bridge.audio import make_pipeline
from bridge.call import Call, CarryOut, End
from bridge.call.detection import DETECTION_WAIT_S, Detection, answer_for
from bridge.realtime import events as ev
from bridge.realtime.dialect import Dialect
from bridge.realtime.events import SessionConfig
from bridge.tools.base import speak_exactly
from bridge.tools.call_control import ControlOutcome
from tests.call.support import CALL_SID, SID, Conversation

GREETING = "Hi, this is Ada from the clinic."
VOICEMAIL = "Hi, this is the clinic: please call us back."


def outbound(voicemail: str | None = VOICEMAIL) -> Conversation:
    call = Call(
        stream_sid=SID,
        call_sid=CALL_SID,
        dialect=Dialect("ga"),
        audio=make_pipeline("pcmu"),
        session=SessionConfig(instructions="be brief", audio_format="pcmu"),
        greeting=GREETING,
        started_at=0.0,
        detection=Detection(voicemail=voicemail, deadline=DETECTION_WAIT_S),
    )
    c = Conversation(call)
    call.upstream_opened(0.0)
    c.pump()
    c.upstream(ev.SessionUpdated())
    return c


def greetings(c: Conversation) -> list[str]:
    return [e["response"]["instructions"] for e in c.of_type("response.create")]


@pytest.mark.parametrize(
    ("kind", "voicemail", "answer"),
    [
        ("human", True, "greet"),
        ("unknown", True, "greet"),
        ("machine_end_beep", True, "voicemail"),
        ("machine_end_silence", True, "voicemail"),
        ("machine_end_other", True, "voicemail"),
        ("machine_end_beep", False, "hangup"),
        ("fax", True, "hangup"),
        ("machine_start", True, "wait"),
        ("robot", True, "greet"),
    ],
)
def test_each_answered_by_value_has_its_answer(kind: str, voicemail: bool, answer: str) -> None:
    assert answer_for(kind, voicemail) == answer


def test_until_detection_the_session_does_not_answer_and_nobody_is_greeted() -> None:
    c = outbound()
    (update,) = c.of_type("session.update")
    turn = update["session"]["audio"]["input"]["turn_detection"]
    assert turn["create_response"] is False
    assert c.of_type("response.create") == []
    c.tick(10.0)
    assert c.of_type("response.create") == []


def test_a_person_hears_the_greeting_with_the_persona_s_turn_detection_back() -> None:
    c = outbound()
    c.call.answered_by("human", 3.0)
    c.pump()
    updates = c.of_type("session.update")
    assert len(updates) == 2
    assert updates[1]["session"]["audio"]["input"]["turn_detection"]["create_response"] is True
    assert c.of_type("response.create") == []  # once the session confirms the update
    c.upstream(ev.SessionUpdated(), now=3.1)
    (greeting,) = greetings(c)
    assert GREETING in greeting
    assert c.logs("answered_by") == [{"answered_by": "human", "then": "greet"}]
    c.call.answered_by("machine_end_beep", 4.0)  # a second result changes nothing
    c.pump()
    assert c.effects_of(CarryOut) == [] and len(greetings(c)) == 1


def test_a_result_before_the_session_is_confirmed_greets_on_its_confirmation() -> None:
    call = Call(
        stream_sid=SID,
        call_sid=CALL_SID,
        dialect=Dialect("ga"),
        audio=make_pipeline("pcmu"),
        session=SessionConfig(instructions="be brief", audio_format="pcmu"),
        greeting=GREETING,
        started_at=0.0,
        detection=Detection(voicemail=None, deadline=DETECTION_WAIT_S),
    )
    c = Conversation(call)
    call.answered_by("unknown", 0.5)  # before the upstream is even open
    call.upstream_opened(0.6)
    c.pump()
    (update,) = c.of_type("session.update")
    assert update["session"]["audio"]["input"]["turn_detection"]["create_response"] is True
    c.upstream(ev.SessionUpdated(), now=0.7)
    assert len(greetings(c)) == 1


def test_a_machine_hears_the_voicemail_after_the_beep_then_the_call_hangs_up() -> None:
    c = outbound()
    c.call.answered_by("machine_end_beep", 12.0)
    c.pump()
    assert greetings(c) == [speak_exactly(VOICEMAIL)]
    c.speak("resp_vm", "vm_item", 400, now=12.1)
    c.play_out(12.6)
    (carry,) = c.effects_of(CarryOut)
    assert (carry.handoff.kind, carry.handoff.reason) == ("hangup", "voicemail")
    c.call.handoff_result(ControlOutcome(ok=True, http_status=200), 12.7)
    c.pump()
    assert [e.reason for e in c.effects_of(End)] == ["voicemail"]
    assert isinstance(c.call.after_stream, Hangup)  # not the fallback's apology
    assert len(c.of_type("session.update")) == 1  # the machine never got the open session


def test_a_machine_without_a_voicemail_and_a_fax_are_hung_up_at_once() -> None:
    for kind, voicemail in (("machine_end_silence", None), ("fax", VOICEMAIL)):
        c = outbound(voicemail)
        c.call.answered_by(kind, 9.0)
        c.pump()
        assert [e.reason for e in c.effects_of(End)] == ["machine"]
        assert greetings(c) == [] and isinstance(c.call.after_stream, Hangup)


def test_without_any_result_the_agent_greets_at_the_deadline() -> None:
    c = outbound()
    c.call.answered_by("machine_start", 2.0)  # not final
    c.tick(DETECTION_WAIT_S - 0.5)
    assert c.of_type("response.create") == []
    c.tick(DETECTION_WAIT_S)
    c.upstream(ev.SessionUpdated(), now=DETECTION_WAIT_S + 0.1)
    assert len(greetings(c)) == 1
    assert [e["then"] for e in c.logs("answered_by")] == ["wait", "greet"]
