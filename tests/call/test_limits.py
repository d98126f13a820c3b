"""Call length, idleness and session renewal, decided by the core on its ticks: the
numbers of a 30-minute call checked in a few milliseconds."""

from __future__ import annotations

from dataclasses import replace

from bridge import twilio_stream as tw
from bridge.call import CallRules, CarryOut, RenewSession
from bridge.call.limits import EndForLimit, LimitWatch, Renew, Reprompt
from bridge.realtime import events as ev
from bridge.tools.base import speak_exactly
from tests.call.support import SID, Conversation, make_call

RULES = CallRules(
    max_call_s=1800.0,
    idle_s=30.0,
    goodbye="Our time is up. Goodbye.",
    idle_reprompt="Are you still there?",
    session_renew_s=3300.0,
)


LONG = replace(RULES, max_call_s=7200.0)  # long enough to outlive a session


def instructions(c: Conversation) -> list[str]:
    return [e["response"]["instructions"] for e in c.of_type("response.create")]


def test_silence_gets_one_reprompt_then_a_goodbye_and_a_hang_up() -> None:
    c = Conversation(make_call(RULES))
    c.tick(29.5)
    assert instructions(c) == []  # 29.5 s of silence: not yet
    c.tick(30.0)
    assert instructions(c) == [speak_exactly("Are you still there?")]
    assert c.logs("call_limit") == [{"limit": "idle_reprompt", "seconds": 30.0}]
    c.speak("resp_1", "item_r", 1000, now=30.1)  # the reprompt plays for a second
    c.play_out(31.1)
    c.tick(60.5)
    assert len(instructions(c)) == 1  # idle again only since the reprompt played (31.1 s)
    c.tick(61.1)
    assert instructions(c)[1] == speak_exactly(RULES.idle_goodbye)
    assert c.logs("call_limit")[1] == {"limit": "idle_seconds", "seconds": 30.0}
    c.speak("resp_2", "item_g", 500, now=61.2)
    c.play_out(61.7)
    (carry,) = c.effects_of(CarryOut)
    assert (carry.handoff.kind, carry.handoff.reason) == ("hangup", "idle")


def test_a_caller_who_answers_the_reprompt_resets_it() -> None:
    c = Conversation(make_call(RULES))
    c.tick(30.0)
    c.upstream(ev.ResponseCreated("resp_1"), ev.ResponseDone("resp_1", "completed"), now=30.0)
    c.upstream(ev.SpeechStarted("user_1", 0), ev.SpeechStopped("user_1", 900), now=35.0)
    c.tick(64.9)
    assert len(instructions(c)) == 1
    c.tick(65.0)  # 30 s after the caller last spoke: a reprompt again, not the goodbye
    assert instructions(c)[1] == speak_exactly("Are you still there?")


def test_no_reprompt_while_the_agent_speaks_or_a_tool_runs() -> None:
    c = Conversation(make_call(RULES))
    c.upstream(ev.ResponseCreated("resp_1"), now=0.0)  # a long answer, never done
    c.tick(100.0)
    assert instructions(c) == [] and c.logs("call_limit") == []


def test_the_length_limit_says_the_goodbye_and_hangs_up_even_if_the_caller_talks() -> None:
    c = Conversation(make_call(RULES))
    c.upstream(ev.SpeechStarted("user_1", 0), now=1790.0)
    c.tick(1799.5)
    assert instructions(c) == []
    c.tick(1800.0)
    assert instructions(c) == [speak_exactly("Our time is up. Goodbye.")]
    assert c.logs("call_limit") == [{"limit": "max_call_seconds", "seconds": 1800.0}]
    c.upstream(
        ev.ResponseCreated("resp_1"),
        ev.OutputItemAdded("resp_1", "bye", "message", "assistant"),
        ev.AudioDelta("resp_1", "bye", "EBAQEBAQ" * 200),
        now=1800.1,
    )
    c.upstream(ev.SpeechStarted("user_2", 0), ev.ResponseDone("resp_1", "cancelled"), now=1800.2)
    (carry,) = c.effects_of(CarryOut)  # a limit is not called off by the caller
    assert carry.handoff.reason == "max_duration"
    c.tick(1900.0)
    assert len(c.logs("call_limit")) == 1  # once


def test_the_session_is_renewed_at_a_quiet_moment_after_its_age_limit() -> None:
    c = Conversation(make_call(LONG))
    c.upstream(ev.SpeechStarted("user_1", 0), now=3290.0)  # keeps the call from going idle
    c.upstream(ev.ResponseCreated("resp_1"), now=3299.0)  # the agent is answering
    c.tick(3300.5)
    assert c.effects_of(RenewSession) == []  # not while it speaks
    c.upstream(ev.ResponseDone("resp_1", "completed"), now=3301.0)
    c.tick(3301.5)
    assert len(c.effects_of(RenewSession)) == 1
    assert c.logs("session_renewal") == [{"session_age_s": 3302}]
    c.tick(3302.0)
    assert len(c.effects_of(RenewSession)) == 1  # asked once, until the new session is up


def test_the_limit_watch_alone_is_a_table_of_moments() -> None:
    watch = LimitWatch(LONG, started_at=0.0)

    def at(now: float, idle: bool = True, activity: float = 0.0, age: float | None = 0.0):
        return watch.check(
            now, idle=idle, last_activity=activity, last_caller_speech=None, session_age_s=age
        )

    assert at(10.0) is None
    assert at(30.0) == Reprompt("Are you still there?", 30.0)
    watch.reprompted(30.0)
    assert at(59.0, activity=30.0) is None
    assert at(3400.0, age=3400.0) == Renew(3400.0)
    assert at(3400.0, idle=False, age=3400.0) is None
    assert at(60.0, activity=30.0, age=None) == EndForLimit(
        "idle", RULES.idle_goodbye, "idle_seconds", 30.0
    )
    assert at(7300.0) is None  # done: nothing more is due


def test_a_hang_up_mid_call_stops_every_timer() -> None:
    c = Conversation(make_call(RULES))
    c.twilio(tw.Stop(SID, "CA"), 5.0)
    c.tick(5000.0)
    assert instructions(c) == [] and c.logs("call_limit") == []


def test_no_renewal_while_a_goodbye_is_being_said() -> None:
    c = Conversation(make_call(replace(LONG, session_renew_s=100.0)))
    c.twilio(tw.Dtmf(SID, "#"), 95.0)  # the caller's hang-up: its goodbye is asked for
    c.upstream(ev.ResponseCreated("resp_1"), ev.ResponseDone("resp_1", "completed"), now=96.0)
    c.tick(101.0)  # the session is old and nothing plays, but the goodbye is under way
    assert c.effects_of(RenewSession) == []
