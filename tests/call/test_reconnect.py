"""Losing the upstream session and replacing it, decided by the core: what is kept, what is
replayed, when to try again and when to give up. Time is passed in."""

from __future__ import annotations

import base64

from bridge import twilio_stream as tw
from bridge.call import Attempt, CallRules, End, GiveUp, Pause, Phase, Reconnect, RenewSession
from bridge.call.reconnect import ReconnectPlan
from bridge.realtime import events as ev
from tests.call.support import SID, Conversation, make_call
from tests.callcore import sink_of

PAYLOAD = base64.b64encode(b"\x7f" * 160).decode()


def test_the_plan_tries_pauses_and_gives_up_at_the_end_of_its_window() -> None:
    plan = ReconnectPlan(lost_at=10.0, window_s=2.0, pause_s=0.2)
    assert plan.step(10.0) == Attempt(1, 2.0)
    plan.failed()
    assert plan.step(10.5) == Pause(0.2)
    step = plan.step(10.75)
    assert isinstance(step, Attempt) and (step.number, step.timeout_s) == (2, 1.25)
    plan.failed()
    assert plan.step(11.875) == Pause(0.125)  # never past the window
    assert plan.step(12.0) == GiveUp(2)


def test_a_lost_session_keeps_the_callers_audio_and_replays_the_conversation() -> None:
    c = Conversation()
    c.upstream(ev.InputCommitted("user_1", None), ev.InputTranscript("user_1", "hi"), now=0.5)
    c.speak("resp_1", "item_a", 100, now=1.0)
    c.upstream(ev.TranscriptDone("resp_1", "item_a", "Hello, how can I help?"))
    c.play_out(1.2)
    c.call.upstream_lost(2.0)
    c.pump()
    assert c.call.phase is Phase.RECONNECTING
    assert c.effects_of(Reconnect) and c.logs("upstream_lost") == [{}]
    sent_before = len(c.sent)
    for _ in range(3):
        c.twilio(tw.Media(SID, PAYLOAD, "inbound"), 2.1)
    assert len(c.sent) == sent_before  # nothing upstream while no session is up
    assert c.call.reconnect_step(2.1) == Attempt(1, 1.9)
    c.call.upstream_reopened(2.3)
    c.pump()
    replay = [e["type"] for e in c.sent[sent_before:]]
    assert replay == (
        ["session.update", "conversation.item.create", "conversation.item.create"]
        + ["input_audio_buffer.append"] * 3
    )
    (line,) = c.logs("upstream_reconnected")
    assert (line["attempt"], line["renewal"], line["gap_ms"]) == (1, False, 300.0)
    assert c.call.phase is Phase.LIVE


def test_an_answer_cut_off_by_the_loss_is_continued_in_the_new_session() -> None:
    c = Conversation()
    c.upstream(ev.ResponseCreated("resp_1"))
    c.call.upstream_lost(1.0)
    c.call.reconnect_step(1.0)
    c.call.upstream_reopened(1.2)
    c.pump()
    (create,) = c.of_type("response.create")
    assert "Continue your answer" in create["response"]["instructions"]


def test_no_session_within_the_window_ends_the_call_as_upstream_failed() -> None:
    c = Conversation(make_call(CallRules(reconnect_window_s=2.0, reconnect_pause_s=0.2)))
    c.call.upstream_lost(5.0)
    assert isinstance(c.call.reconnect_step(5.0), Attempt)
    c.call.reconnect_failed("ConnectionRefusedError")
    assert c.call.reconnect_step(5.1) == Pause(0.2)
    assert isinstance(c.call.reconnect_step(5.3), Attempt)
    c.call.reconnect_failed("ConnectionRefusedError")
    c.call.reconnect_step(5.4)
    assert c.call.reconnect_step(7.0) == GiveUp(2)
    c.pump()
    assert [e.reason for e in c.effects_of(End)] == ["upstream_failed"]
    assert [x["attempt"] for x in c.logs("upstream_reconnect_failed")] == [1, 2]
    assert c.logs("upstream_reconnect_gave_up") == [{"attempts": 2, "window_s": 2.0}]


def test_a_renewal_is_a_quiet_reconnect() -> None:
    c = Conversation(make_call(CallRules(session_renew_s=100.0, idle_s=1e9, max_call_s=1e9)))
    c.upstream(ev.SpeechStarted("user_1", 0), now=99.0)
    c.tick(101.0)
    assert c.effects_of(RenewSession)
    c.call.upstream_lost(101.1)  # the adapter closed the old session
    c.call.reconnect_step(101.1)
    c.call.upstream_reopened(101.2)
    c.pump()
    assert c.logs("upstream_lost") == []  # not an outage
    assert c.logs("upstream_reconnected")[0]["renewal"] is True
    c.tick(150.0)
    assert len(c.effects_of(RenewSession)) == 1  # the new session is young


def test_the_backlog_keeps_the_newest_two_seconds() -> None:
    c = Conversation()
    c.call.upstream_lost(1.0)
    for _ in range(130):
        c.twilio(tw.Media(SID, PAYLOAD, "inbound"), 1.5)
    assert c.call.stats.backlog_dropped == 30 and c.call.stats.frames_in == 130
    c.call.reconnect_step(1.5)
    c.call.upstream_reopened(1.6)
    c.pump()
    assert len(c.of_type("input_audio_buffer.append")) == 100
    assert sink_of(c.call).upstream == []  # all taken
