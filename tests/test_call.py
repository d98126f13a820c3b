"""The call state machine, driven by plain event lists: no sockets, no clocks.

μ-law passthrough keeps the arithmetic visible: 8 bytes of audio are 1 ms, a 160-byte delta
is exactly one 20 ms frame.
"""

from __future__ import annotations

import base64
from dataclasses import replace

from bridge import twilio_stream as tw
from bridge.audio import make_pipeline
from bridge.call import BargeIn, Call, End, Log, RunTool, TranscriptLine
from bridge.realtime import events as ev
from bridge.realtime.dialect import Dialect
from bridge.realtime.events import SessionConfig, TurnDetection
from tests.callcore import drain, tool_result

SID = "MZ00000000000000000000000000000001"
R1, R2 = "resp_1", "resp_2"


def make_call(interrupt_response: bool = True, greeting: str | None = "Hello there") -> Call:
    call = Call(
        stream_sid=SID,
        call_sid="CA00000000000000000000000000000001",
        dialect=Dialect("ga"),
        audio=make_pipeline("pcmu"),
        session=SessionConfig(
            instructions="be brief",
            audio_format="pcmu",
            turn_detection=TurnDetection(interrupt_response=interrupt_response),
        ),
        greeting=greeting,
        started_at=0.0,
    )
    call.upstream_opened(0.0)
    return call


def delta(response_id: str, item_id: str, ms: int) -> ev.AudioDelta:
    return ev.AudioDelta(response_id, item_id, base64.b64encode(b"\x10" * (8 * ms)).decode())


def start_response(call: Call, response_id: str, item_id: str, now: float = 0.0) -> None:
    call.on_upstream(ev.ResponseCreated(response_id), now)
    call.on_upstream(ev.OutputItemAdded(response_id, item_id, "message", "assistant"), now)


def marks_in(messages: list[dict]) -> list[str]:
    return [m["mark"]["name"] for m in messages if m["event"] == "mark"]


def echo(call: Call, names: list[str], now: float) -> None:
    for name in names:
        call.on_twilio(tw.Mark(SID, name), now)


def test_session_update_first_then_greeting_after_session_updated() -> None:
    call = make_call()
    _, upstream, _ = drain(call)
    assert [e["type"] for e in upstream] == ["session.update"]
    call.on_upstream(ev.SessionUpdated(), 0.0)
    _, upstream, _ = drain(call)
    assert [e["type"] for e in upstream] == ["response.create"]
    assert "Hello there" in upstream[0]["response"]["instructions"]
    call.on_upstream(ev.SessionUpdated(), 0.1)  # a second update does not greet twice
    assert drain(call)[1] == []


def test_caller_audio_before_upstream_opens_is_sent_after_session_update() -> None:
    call = Call(
        stream_sid=SID,
        call_sid="CA1",
        dialect=Dialect("ga"),
        audio=make_pipeline("pcmu"),
        session=SessionConfig(instructions="x", audio_format="pcmu"),
        greeting=None,
        started_at=0.0,
    )
    payload = base64.b64encode(b"\x7f" * 160).decode()
    for _ in range(3):
        call.on_twilio(tw.Media(SID, payload, "inbound"), 0.0)
    assert drain(call)[1] == []
    call.upstream_opened(0.1)
    _, upstream, _ = drain(call)
    assert [e["type"] for e in upstream] == ["session.update"] + ["input_audio_buffer.append"] * 3
    assert upstream[1]["audio"] == payload


def test_each_20ms_of_agent_audio_is_one_media_frame_followed_by_a_mark() -> None:
    call = make_call()
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 100), 0.0)
    twilio, _, _ = drain(call)
    assert [m["event"] for m in twilio] == ["media", "mark"] * 5
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for m in twilio[::2])
    assert all(m["streamSid"] == SID for m in twilio)


def test_barge_in_clears_first_then_truncates_at_what_was_heard() -> None:
    call = make_call()
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 1000), 0.0)
    names = marks_in(drain(call)[0])
    assert len(names) == 50
    echo(call, names[:10], 0.200)  # Twilio confirmed 200 ms played
    call.on_upstream(ev.SpeechStarted("user_1", 1000), 0.207)
    twilio, upstream, effects = drain(call)
    assert twilio == [{"event": "clear", "streamSid": SID}]
    # 200 ms confirmed + 7 ms into the frame playing now; server cancels itself.
    assert upstream == [
        {
            "type": "conversation.item.truncate",
            "item_id": "item_a",
            "content_index": 0,
            "audio_end_ms": 207,
        }
    ]
    assert BargeIn("item_a", 207) in effects
    lines = [e.fields for e in effects if isinstance(e, TranscriptLine)]
    assert lines == [
        {"role": "agent", "text": "", "item_id": "item_a", "interrupted": True, "played_ms": 207}
    ]


def test_an_interrupted_line_carries_the_words_heard_from_the_transcript_deltas() -> None:
    """The `.done` of an interrupted item comes after the barge-in, if at all: the line is
    made of the deltas so far, cut to the share of the audio the caller heard."""
    call = make_call()
    drain(call)
    start_response(call, R1, "item_a")
    for word in ("Our ", "opening ", "hours ", "are ", "nine ", "to ", "five."):
        call.on_upstream(ev.TranscriptDelta("item_a", word), 0.0)
    call.on_upstream(delta(R1, "item_a", 1400), 0.0)  # 7 words over 1.4 s of audio
    names = marks_in(drain(call)[0])
    echo(call, names[:20], 0.4)  # 400 ms played: 2 words
    call.on_upstream(ev.SpeechStarted("user_1", 0), 0.4)
    lines = [e.fields for e in drain(call)[2] if isinstance(e, TranscriptLine)]
    assert [(x["text"], x["interrupted"], x["played_ms"]) for x in lines] == [
        ("Our opening", True, 400)
    ]
    assert call.history == [("agent", "Our opening")]


def test_heard_time_never_runs_more_than_one_frame_past_the_last_mark() -> None:
    call = make_call()
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 1000), 0.0)
    names = marks_in(drain(call)[0])
    echo(call, names[:5], 0.100)
    call.on_upstream(ev.SpeechStarted("user_1", 0), 0.900)  # marks stalled: trust them
    _, upstream, _ = drain(call)
    assert upstream[0]["audio_end_ms"] == 120


def test_marks_echoed_after_clear_do_not_count_as_played() -> None:
    call = make_call()
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 400), 0.0)
    names = marks_in(drain(call)[0])
    echo(call, names[:3], 0.060)
    call.on_upstream(ev.SpeechStarted("user_1", 0), 0.060)
    drain(call)
    echo(call, names[3:], 0.061)  # Twilio echoes every pending mark on clear
    assert call.items["item_a"].played_ms == 60
    assert call.items["item_a"].heard_ms == 60


def test_truncate_is_clamped_to_the_audio_the_item_really_has() -> None:
    call = make_call()
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 30), 0.0)  # 1.5 frames
    call.on_upstream(ev.AudioDone(R1, "item_a"), 0.0)  # padded to 2 frames
    names = marks_in(drain(call)[0])
    assert len(names) == 2
    echo(call, names[:1], 0.020)
    call.on_upstream(ev.SpeechStarted("user_1", 0), 0.039)  # estimate 39 ms > 30 ms of audio
    _, upstream, _ = drain(call)
    assert upstream[0]["audio_end_ms"] == 30


def test_no_clear_and_no_truncate_when_playback_already_finished() -> None:
    call = make_call()
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 40), 0.0)
    call.on_upstream(ev.AudioDone(R1, "item_a"), 0.0)
    call.on_upstream(ev.ResponseDone(R1, "completed"), 0.0)
    echo(call, marks_in(drain(call)[0]), 0.040)
    _, _, effects = drain(call)
    lines = [e.fields for e in effects if isinstance(e, TranscriptLine)]
    assert lines == [
        {"role": "agent", "text": "", "item_id": "item_a", "interrupted": False, "played_ms": 40}
    ]
    call.on_upstream(ev.SpeechStarted("user_1", 0), 1.0)
    assert drain(call) == ([], [], [])


def test_cancel_only_when_the_server_will_not_cancel_by_itself() -> None:
    for interrupt_response, expected in ((True, []), (False, ["response.cancel"])):
        call = make_call(interrupt_response=interrupt_response)
        drain(call)
        start_response(call, R1, "item_a")
        call.on_upstream(delta(R1, "item_a", 200), 0.0)
        drain(call)
        call.on_upstream(ev.SpeechStarted("user_1", 0), 0.01)
        _, upstream, _ = drain(call)
        types = [e["type"] for e in upstream if e["type"] != "conversation.item.truncate"]
        assert types == expected


def test_no_cancel_when_the_interrupted_response_is_already_done() -> None:
    call = make_call(interrupt_response=False)
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 200), 0.0)
    call.on_upstream(ev.AudioDone(R1, "item_a"), 0.0)
    call.on_upstream(ev.ResponseDone(R1, "completed"), 0.0)
    drain(call)
    call.on_upstream(ev.SpeechStarted("user_1", 0), 0.05)  # still playing, response done
    twilio, upstream, _ = drain(call)
    assert twilio[0]["event"] == "clear"
    assert [e["type"] for e in upstream] == ["conversation.item.truncate"]


def test_late_deltas_of_the_interrupted_response_are_dropped_and_the_next_one_plays() -> None:
    call = make_call()
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 100), 0.0)
    drain(call)
    call.on_upstream(ev.SpeechStarted("user_1", 0), 0.01)
    drain(call)
    call.on_upstream(delta(R1, "item_a", 500), 0.02)
    call.on_upstream(ev.AudioDone(R1, "item_a"), 0.02)
    call.on_upstream(ev.ResponseDone(R1, "cancelled", "turn_detected"), 0.02)
    assert drain(call)[0] == []
    assert call.stats.deltas_dropped == 1
    start_response(call, R2, "item_b", 0.5)
    call.on_upstream(delta(R2, "item_b", 60), 0.5)
    assert [m["event"] for m in drain(call)[0]] == ["media", "mark"] * 3


def test_two_barge_ins_in_a_row() -> None:
    call = make_call()
    drain(call)
    for n, (resp, item) in enumerate(((R1, "item_a"), (R2, "item_b"))):
        start_response(call, resp, item, float(n))
        call.on_upstream(delta(resp, item, 500), float(n))
        names = marks_in(drain(call)[0])
        assert all(name.startswith(f"{n}.") for name in names)  # the clear epoch, then a count
        echo(call, names[:4], n + 0.080)
        call.on_upstream(ev.SpeechStarted(f"user_{n}", 0), n + 0.080)
        twilio, upstream, _ = drain(call)
        assert twilio == [{"event": "clear", "streamSid": SID}]
        assert upstream[0]["item_id"] == item and upstream[0]["audio_end_ms"] == 80
    assert call.stats.barge_ins == 2


def test_a_response_with_two_audio_items_truncates_the_unheard_one_at_zero() -> None:
    call = make_call()
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 100), 0.0)
    call.on_upstream(ev.AudioDone(R1, "item_a"), 0.0)
    call.on_upstream(ev.OutputItemAdded(R1, "item_b", "message", "assistant"), 0.0)
    call.on_upstream(delta(R1, "item_b", 100), 0.0)
    echo(call, marks_in(drain(call)[0])[:2], 0.040)
    call.on_upstream(ev.SpeechStarted("user_1", 0), 0.040)
    _, upstream, _ = drain(call)
    assert [(e["item_id"], e["audio_end_ms"]) for e in upstream] == [("item_a", 40), ("item_b", 0)]


def test_caller_talking_over_silence_between_responses_changes_nothing() -> None:
    call = make_call(interrupt_response=False)
    drain(call)
    call.on_upstream(ev.SpeechStarted("user_1", 0), 1.0)
    assert drain(call) == ([], [], [])


def test_speech_while_a_response_is_generating_but_not_yet_heard_drops_it_without_clear() -> None:
    call = make_call(interrupt_response=False)
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(ev.SpeechStarted("user_1", 0), 0.0)
    twilio, upstream, effects = drain(call)
    assert twilio == []
    assert [e["type"] for e in upstream] == ["response.cancel"]
    assert not any(isinstance(e, BargeIn) for e in effects)
    call.on_upstream(delta(R1, "item_a", 100), 0.01)
    assert drain(call)[0] == []


def test_transcript_stays_in_conversation_order_when_the_caller_text_comes_late() -> None:
    call = make_call()
    drain(call)
    call.on_upstream(ev.InputCommitted("user_1", None), 1.0)
    start_response(call, R1, "item_a", 1.1)
    call.on_upstream(delta(R1, "item_a", 20), 1.1)
    call.on_upstream(ev.TranscriptDone(R1, "item_a", "Sure, one moment."), 1.1)
    call.on_upstream(ev.AudioDone(R1, "item_a"), 1.1)
    call.on_upstream(ev.ResponseDone(R1, "completed"), 1.1)
    echo(call, marks_in(drain(call)[0]), 1.2)
    assert [e for e in drain(call)[2] if isinstance(e, TranscriptLine)] == []
    call.on_upstream(ev.InputTranscript("user_1", "What time is it?"), 1.5)
    lines = [e.fields for e in drain(call)[2] if isinstance(e, TranscriptLine)]
    assert [(line["role"], line["text"]) for line in lines] == [
        ("caller", "What time is it?"),
        ("agent", "Sure, one moment."),
    ]
    assert lines[1]["played_ms"] == 20


def fcall(call_id: str, response_id: str = R1) -> ev.FunctionCall:
    return ev.FunctionCall(response_id, f"fc_{call_id}", call_id, "web_search", '{"q":"x"}')


def test_two_function_calls_are_answered_together_then_one_response_create() -> None:
    call = make_call()
    drain(call)
    call.on_upstream(ev.ResponseCreated(R1), 0.0)
    call.on_upstream(fcall("c1"), 0.0)
    call.on_upstream(fcall("c2"), 0.0)
    assert not any(isinstance(e, RunTool) for e in drain(call)[2])  # not before it is done
    call.on_upstream(
        ev.ResponseDone(R1, "completed", function_calls=(fcall("c1"), fcall("c2"))), 0.1
    )
    _, _, effects = drain(call)
    assert [e.call.call_id for e in effects if isinstance(e, RunTool)] == ["c1", "c2"]  # once
    tool_result(call, R1, "c2", '{"ok":2}', 0.5)
    assert drain(call)[1] == []  # waits for c1
    tool_result(call, R1, "c1", '{"ok":1}', 0.6)
    _, upstream, _ = drain(call)
    assert [(e["type"], e.get("item", {}).get("call_id")) for e in upstream] == [
        ("conversation.item.create", "c1"),
        ("conversation.item.create", "c2"),
        ("response.create", None),
    ]


def test_an_error_before_session_updated_is_the_session_refused() -> None:
    call = make_call()
    drain(call)
    call.on_upstream(ev.UpstreamError("invalid_value", "Invalid value: 'robot'.", None), 0.1)
    _, upstream, effects = drain(call)
    assert upstream == []  # no greeting for a session that kept its defaults
    assert [e.reason for e in effects if isinstance(e, End)] == ["session_rejected"]
    (line,) = [e.fields for e in effects if isinstance(e, Log)]
    assert line == {"code": "invalid_value", "message": "Invalid value: 'robot'."}


def test_no_session_updated_within_2_s_is_the_session_refused() -> None:
    call = make_call()
    drain(call)
    call.tick(1.9)
    assert drain(call)[2] == []
    call.tick(2.0)
    effects = drain(call)[2]
    assert [e.reason for e in effects if isinstance(e, End)] == ["session_rejected"]


def test_calls_of_a_response_that_did_not_complete_never_run() -> None:
    for status, item_status in [
        ("cancelled", "incomplete"),
        ("incomplete", "incomplete"),
        ("failed", None),
        ("completed", "incomplete"),
    ]:
        call = make_call()
        drain(call)
        call.on_upstream(ev.ResponseCreated(R1), 0.0)
        call.on_upstream(fcall("c1"), 0.0)  # arguments "done", as far as they got
        cut = replace(fcall("c1"), arguments='{"q":', status=item_status)
        call.on_upstream(ev.ResponseDone(R1, status, function_calls=(cut,)), 0.1)
        _, _, effects = drain(call)
        assert not any(isinstance(e, RunTool) for e in effects), status
        (dropped,) = [
            e.fields for e in effects if isinstance(e, Log) and e.event == "tool_call_dropped"
        ]
        assert (dropped["response_status"], dropped["item_status"]) == (status, item_status)
        assert call.idle  # nothing owed: the model is not waiting for an output


def test_tool_results_while_a_response_is_active_wait_for_it_to_finish() -> None:
    call = make_call()
    drain(call)
    call.on_upstream(ev.ResponseCreated(R1), 0.0)
    call.on_upstream(fcall("c1"), 0.0)
    call.on_upstream(ev.ResponseDone(R1, "completed"), 0.0)
    call.on_upstream(ev.ResponseCreated(R2), 0.2)  # the caller spoke meanwhile
    drain(call)
    tool_result(call, R1, "c1", "{}", 0.3)
    _, upstream, _ = drain(call)
    assert [e["type"] for e in upstream] == ["conversation.item.create"]
    call.on_upstream(ev.ResponseDone(R2, "completed"), 0.4)
    _, upstream, _ = drain(call)
    assert [e["type"] for e in upstream] == ["response.create"]


def test_no_extra_response_when_the_active_one_already_saw_the_tool_output() -> None:
    call = make_call()
    drain(call)
    call.on_upstream(ev.ResponseCreated(R1), 0.0)
    call.on_upstream(fcall("c1"), 0.0)
    call.on_upstream(ev.ResponseDone(R1, "completed"), 0.0)
    drain(call)
    tool_result(call, R1, "c1", "{}", 0.1)
    _, upstream, _ = drain(call)
    assert [e["type"] for e in upstream] == ["conversation.item.create", "response.create"]
    output_id = upstream[0]["item"]["id"]
    call.on_upstream(ev.ItemAdded(output_id, "fc_c1", "function_call_output", None), 0.1)
    call.on_upstream(ev.ResponseCreated(R2), 0.1)
    call.on_upstream(ev.ResponseDone(R2, "completed"), 0.5)
    assert drain(call)[1] == []


def test_an_item_the_service_never_confirms_is_answered_once_not_forever() -> None:
    call = make_call()
    drain(call)
    call.on_upstream(ev.ResponseCreated(R1), 0.0)
    call.on_upstream(fcall("c1"), 0.0)
    call.on_upstream(ev.ResponseDone(R1, "completed", function_calls=(fcall("c1"),)), 0.0)
    drain(call)
    tool_result(call, R1, "c1", "{}", 0.1)
    _, upstream, _ = drain(call)
    assert [e["type"] for e in upstream] == ["conversation.item.create", "response.create"]
    for n in range(2, 6):  # no conversation.item.added ever comes for the output
        call.on_upstream(ev.ResponseCreated(f"resp_{n}"), n)
        call.on_upstream(ev.ResponseDone(f"resp_{n}", "completed"), n + 0.5)
    assert drain(call)[1] == []  # one response for the tool result, then silence
    assert call.idle


def test_an_item_the_service_refuses_is_dropped_with_a_log_line() -> None:
    call = make_call()
    call.on_upstream(ev.SessionUpdated(), 0.0)  # configured: an error now is about an item
    drain(call)
    call.on_upstream(ev.ResponseCreated(R1), 0.0)
    call.on_upstream(fcall("c1"), 0.0)
    call.on_upstream(ev.ResponseDone(R1, "completed", function_calls=(fcall("c1"),)), 0.0)
    call.on_upstream(ev.ResponseCreated(R2), 0.05)  # the caller spoke: a response is active
    drain(call)
    tool_result(call, R1, "c1", "{}", 0.1)
    _, upstream, _ = drain(call)
    (create,) = upstream
    item_id = create["item"]["id"]
    assert create["event_id"] == f"create_{item_id}"
    refusal = ev.UpstreamError(
        "invalid_value", "No tool call found.", "invalid_request_error", create["event_id"]
    )
    call.on_upstream(refusal, 0.2)
    call.on_upstream(ev.ResponseDone(R2, "completed"), 0.3)
    _, upstream, effects = drain(call)
    assert upstream == []  # nothing is owed for an item the service refused
    (line,) = [e.fields for e in effects if isinstance(e, Log) and e.event == "item_refused"]
    assert (line["item_id"], line["code"]) == (item_id, "invalid_value")


def test_a_tool_result_after_hang_up_is_dropped() -> None:
    call = make_call()
    drain(call)
    call.on_upstream(ev.ResponseCreated(R1), 0.0)
    call.on_upstream(fcall("c1"), 0.0)
    call.on_upstream(ev.ResponseDone(R1, "completed"), 0.0)
    call.finish(1.0, "caller_hangup")
    drain(call)
    tool_result(call, R1, "c1", "{}", 2.0)
    twilio, upstream, effects = drain(call)
    assert (twilio, upstream) == ([], [])  # nothing goes to a call that is over…
    assert [e.event for e in effects if isinstance(e, Log)] == ["tool_call"]  # …but it is logged


def test_call_ended_counts_turns_and_barge_ins() -> None:
    call = make_call()
    drain(call)
    call.on_upstream(ev.InputCommitted("user_1", None), 1.0)
    call.on_upstream(ev.InputTranscript("user_1", "hi"), 1.2)
    call.finish(12.5, "caller_hangup")
    ended = [e.fields for e in drain(call)[2] if isinstance(e, Log) and e.event == "call_ended"]
    assert ended[0]["reason"] == "caller_hangup"
    assert ended[0]["duration_s"] == 12.5
    assert ended[0]["turns"] == 1 and ended[0]["barge_ins"] == 0


def test_hang_up_while_the_agent_speaks_still_logs_its_line_with_what_was_heard() -> None:
    """The caller hangs up on "Goodbye": the agent's last line is in the transcript, before
    `call_ended`, with the 60 ms of its 100 whose marks came back."""
    call = make_call(greeting=None)
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 100), 0.0)  # five 20 ms frames
    call.on_upstream(ev.TranscriptDone(R1, "item_a", "Goodbye, have a nice day."), 0.0)
    twilio, _, _ = drain(call)
    echo(call, marks_in(twilio)[:3], 0.06)
    call.finish(0.07, "caller_hangup")
    logs = [e for e in drain(call)[2] if isinstance(e, Log | TranscriptLine)]
    assert [getattr(e, "event", "transcript") for e in logs] == ["transcript", "call_ended"]
    assert logs[0].fields == {
        "role": "agent",
        "text": "Goodbye, have a",  # the 3 words of 5 the caller heard in 60 ms of 100
        "item_id": "item_a",
        "interrupted": False,
        "played_ms": 60,
    }


def test_barge_in_while_a_tool_call_is_pending_keeps_the_tool_answer() -> None:
    call = make_call(interrupt_response=False)
    drain(call)
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 200), 0.0)  # "Let me check that for you."
    call.on_upstream(ev.AudioDone(R1, "item_a"), 0.0)
    call.on_upstream(fcall("c1"), 0.0)
    call.on_upstream(ev.ResponseDone(R1, "completed"), 0.0)
    drain(call)
    call.on_upstream(ev.SpeechStarted("user_1", 0), 0.05)  # the caller talks over it
    twilio, upstream, _ = drain(call)
    assert twilio[0]["event"] == "clear"
    assert [e["type"] for e in upstream] == ["conversation.item.truncate"]  # no cancel: done
    tool_result(call, R1, "c1", '{"temp": 21}', 1.0)
    _, upstream, _ = drain(call)
    assert [e["type"] for e in upstream] == ["conversation.item.create", "response.create"]


def test_beta_function_call_without_name_takes_it_from_the_output_item() -> None:
    call = make_call()
    drain(call)
    call.on_upstream(ev.ResponseCreated(R1), 0.0)
    call.on_upstream(ev.OutputItemAdded(R1, "fc_1", "function_call", None, "web_search"), 0.0)
    call.on_upstream(ev.FunctionCall(R1, "fc_1", "c1", "", '{"query":"x"}'), 0.0)
    call.on_upstream(ev.ResponseDone(R1, "completed"), 0.0)
    runs = [e for e in drain(call)[2] if isinstance(e, RunTool)]
    assert [r.call.name for r in runs] == ["web_search"]


def test_upstream_errors_are_logged_with_their_code_and_the_call_goes_on() -> None:
    call = make_call(greeting=None)
    call.on_upstream(ev.SessionUpdated(), 0.0)  # configured: errors now are the call's
    call.on_upstream(ev.ResponseCreated("resp_0"), 0.0)
    call.on_upstream(ev.ResponseDone("resp_0", "completed"), 0.0)
    drain(call)
    call.on_upstream(ev.UpstreamError("rate_limit_exceeded", "slow down", "server_error"), 0.0)
    call.on_upstream(ev.UpstreamError("response_cancel_not_active", "no response", None), 0.0)
    _, _, effects = drain(call)
    errors = [(e.fields["code"], e.level) for e in effects if isinstance(e, Log)]
    assert errors == [("rate_limit_exceeded", "warning"), ("response_cancel_not_active", "info")]
    assert not call.ended
    start_response(call, R1, "item_a")
    call.on_upstream(delta(R1, "item_a", 40), 0.1)
    assert len(marks_in(drain(call)[0])) == 2
