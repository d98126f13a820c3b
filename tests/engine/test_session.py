"""The session state machine, driven with events and no sockets: one behaviour per test.

Every event the session emits is checked against the openai server-event models of its
dialect by the driver, so each test also asserts conformance.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest

from bridge.engine.config import EngineSessionConfig
from bridge.engine.ids import IdGenerator
from bridge.engine.items import FunctionCallItem, MessageItem
from bridge.engine.responder import Output, Speech, ToolCall
from bridge.engine.session import RealtimeSession, RespondJob, TranscribeJob
from bridge.engine.voice import tone
from tests.conformance import DialectName, validate_server_event


class Driver:
    """Feeds a session and collects (and validates) everything it emits."""

    def __init__(self, dialect: DialectName = "ga", **options: Any) -> None:
        self.dialect = dialect
        self.session = RealtimeSession(dialect, ids=IdGenerator("T"), **options)
        self.jobs: list[Any] = []

    def send(self, event: dict[str, Any] | str) -> list[dict[str, Any]]:
        self.session.receive(event if isinstance(event, str) else orjson.dumps(event))
        return self.drain()

    def drain(self) -> list[dict[str, Any]]:
        events = self.session.events_to_send()
        for event in events:
            assert validate_server_event(event, self.dialect) == [], event
            assert event["event_id"].startswith("event_")
        self.jobs += self.session.jobs_to_run()
        return events

    def respond(self, outputs: Sequence[Output]) -> list[dict[str, Any]]:
        """Answer the pending response job and stream the response to its end."""
        job = next(j for j in self.jobs if isinstance(j, RespondJob))
        self.jobs.remove(job)
        self.session.response_planned(job.request.response_id, outputs)
        return self.stream()

    def stream(self, steps: int | None = None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while self.session.streaming and (steps is None or steps > 0):
            self.session.advance()
            events += self.drain()
            steps = None if steps is None else steps - 1
        return events

    def append(self, pcm: np.ndarray, chunk: int = 480) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for i in range(0, len(pcm), chunk):
            audio = base64.b64encode(pcm[i : i + chunk].tobytes()).decode()
            events += self.send({"type": "input_audio_buffer.append", "audio": audio})
        return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def silence(ms: int) -> np.ndarray:
    return np.zeros(ms * 24, dtype=np.int16)


def ga_update(**session: Any) -> dict[str, Any]:
    return {"type": "session.update", "session": {"type": "realtime", **session}}


def error_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    [event] = [e for e in events if e["type"] == "error"]
    return event["error"]


SAY = [Speech("Hello there, how can I help?", tone(1000))]


# --- session lifecycle and configuration ------------------------------------------------------


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_session_created_is_the_first_event(dialect: DialectName) -> None:
    driver = Driver(dialect)
    [created] = driver.drain()
    assert created["type"] == "session.created"


def test_ga_session_shows_the_documented_defaults() -> None:
    session = Driver("ga").drain()[0]["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def test_beta_session_uses_top_level_fields() -> None:
    session = Driver("beta").drain()[0]["session"]
    assert session["input_audio_format"] == "pcm16"
    assert session["turn_detection"]["type"] == "server_vad"
    assert "type" not in session and "audio" not in session


def test_session_update_merges_and_records_the_effective_config() -> None:
    driver = Driver("ga")
    driver.drain()
    driver.send(ga_update(instructions="Be brief.", audio={"output": {"voice": "cedar"}}))
    [updated] = driver.send(
        ga_update(
            audio={
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "whisper-1"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 700},
                },
                "output": {"format": {"type": "audio/pcmu"}},
            },
            tools=[{"type": "function", "name": "lookup", "parameters": {}}],
        )
    )
    config = driver.session.config
    assert updated["type"] == "session.updated"
    assert (config.instructions, config.voice) == ("Be brief.", "cedar")  # kept from before
    assert (config.input_format.value, config.output_format.value) == ("pcmu", "pcmu")
    assert config.turn_detection is not None
    assert config.turn_detection.silence_duration_ms == 700
    assert (config.turn_detection.create_response, config.turn_detection.interrupt_response) == (
        True,
        True,
    )
    assert config.transcription is not None and config.transcription.model == "whisper-1"
    assert [t["name"] for t in config.tools] == ["lookup"]
    assert updated["session"]["audio"]["output"]["voice"] == "cedar"


def test_beta_session_update_sets_the_same_config() -> None:
    driver = Driver("beta")
    driver.send(
        {
            "type": "session.update",
            "session": {
                "input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_ulaw",
                "voice": "verse",
                "turn_detection": {"type": "server_vad", "interrupt_response": False},
                "input_audio_transcription": {"model": "whisper-1"},
            },
        }
    )
    config = driver.session.config
    assert (config.input_format.value, config.voice) == ("pcmu", "verse")
    assert config.turn_detection is not None and not config.turn_detection.interrupt_response


def test_turn_detection_null_turns_it_off() -> None:
    driver = Driver("ga")
    driver.send(ga_update(audio={"input": {"turn_detection": None}}))
    assert driver.session.config.turn_detection is None


def test_beta_shaped_update_on_ga_is_refused_and_changes_nothing() -> None:
    driver = Driver("ga")
    driver.drain()
    events = driver.send(
        {"type": "session.update", "session": {"voice": "verse", "input_audio_format": "g711_ulaw"}}
    )
    assert error_of(events)["code"] == "missing_required_parameter"
    assert error_of(events)["param"] == "session.type"
    assert driver.session.config == EngineSessionConfig()


def test_misspelled_session_key_is_an_unknown_parameter() -> None:
    driver = Driver("ga")
    events = driver.send(ga_update(audio={"input": {"formatt": {"type": "audio/pcmu"}}}))
    assert error_of(events)["code"] == "unknown_parameter"
    assert error_of(events)["message"] == "Unknown parameter: 'session.audio.input.formatt'."


def test_voice_cannot_change_after_assistant_audio() -> None:
    driver = Driver("ga")
    driver.send({"type": "response.create"})
    driver.respond(SAY)
    events = driver.send(ga_update(audio={"output": {"voice": "cedar"}}))
    assert error_of(events)["code"] == "cannot_update_voice"


# --- malformed input --------------------------------------------------------------------------


def test_unknown_event_is_an_error_and_the_session_goes_on() -> None:
    driver = Driver("ga")
    driver.drain()
    events = driver.send({"type": "response.audio.delta", "event_id": "evt_9"})
    error = error_of(events)
    assert (error["type"], error["code"], error["event_id"]) == (
        "invalid_request_error",
        "invalid_value",
        "evt_9",
    )
    assert types(driver.send(ga_update(instructions="x"))) == ["session.updated"]


def test_malformed_json_is_an_error() -> None:
    driver = Driver("ga")
    driver.drain()
    assert error_of(driver.send("{not json"))["code"] == "invalid_json"
    assert driver.session.errors[-1].client_event_type is None


def test_missing_field_is_named() -> None:
    driver = Driver("ga")
    events = driver.send({"type": "conversation.item.truncate", "item_id": "x", "content_index": 0})
    assert error_of(events)["message"] == "Missing required parameter: 'audio_end_ms'."


# --- the input audio buffer -------------------------------------------------------------------


def test_commit_of_an_empty_buffer_is_an_error() -> None:
    driver = Driver("ga")
    driver.drain()
    error = error_of(driver.send({"type": "input_audio_buffer.commit"}))
    assert error["code"] == "input_audio_buffer_commit_empty"
    assert "buffer only has 0.00ms of audio" in error["message"]


def test_manual_commit_adds_a_user_item_and_asks_for_a_transcript() -> None:
    driver = Driver("ga", config=EngineSessionConfig(turn_detection=None))
    driver.drain()
    driver.append(tone(300))
    events = driver.send({"type": "input_audio_buffer.commit"})
    assert types(events) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    [job] = driver.jobs
    assert isinstance(job, TranscribeJob) and len(job.audio) == 300 * 24
    assert job.item_id == events[0]["item_id"]
    assert driver.session.response is None  # only VAD creates responses by itself


def test_clear_empties_the_buffer() -> None:
    driver = Driver("ga", config=EngineSessionConfig(turn_detection=None))
    driver.append(tone(300))
    assert types(driver.send({"type": "input_audio_buffer.clear"})) == [
        "input_audio_buffer.cleared"
    ]
    assert driver.session.buffered_ms == 0


def test_server_vad_turn_gives_the_documented_events_and_times() -> None:
    driver = Driver("ga")
    driver.drain()
    events = driver.append(np.concatenate([silence(500), tone(600), silence(1000)]))
    assert types(events) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
    ]
    started, stopped, committed = events[:3]
    # Speech at 500 ms minus 300 ms prefix padding; stop after 500 ms of silence past 1100 ms.
    assert (started["audio_start_ms"], stopped["audio_end_ms"]) == (200, 1600)
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    [item] = driver.session.conversation.items
    assert isinstance(item, MessageItem) and item.content[0].audio_ms == 1400


def test_transcript_arrives_when_transcription_is_configured() -> None:
    driver = Driver("ga")
    driver.send(ga_update(audio={"input": {"transcription": {"model": "whisper-1"}}}))
    events = driver.append(np.concatenate([tone(600), silence(600)]))
    item_id = events[0]["item_id"]
    driver.session.transcription_completed(item_id, "I need a plumber")
    [done] = driver.drain()
    assert done["type"] == "conversation.item.input_audio_transcription.completed"
    assert (done["item_id"], done["transcript"]) == (item_id, "I need a plumber")


def test_no_transcript_event_without_transcription() -> None:
    driver = Driver("ga")
    driver.drain()
    events = driver.append(np.concatenate([tone(600), silence(600)]))
    driver.session.transcription_completed(events[0]["item_id"], "hello")
    assert driver.drain() == []
    item = driver.session.conversation.items[0]
    assert isinstance(item, MessageItem) and item.text == "hello"  # kept for the responder


def test_create_response_false_only_commits() -> None:
    driver = Driver("ga")
    driver.send(
        ga_update(
            audio={"input": {"turn_detection": {"type": "server_vad", "create_response": False}}}
        )
    )
    events = driver.append(np.concatenate([tone(600), silence(600)]))
    assert "response.created" not in types(events)


# --- responses --------------------------------------------------------------------------------


def test_response_streams_audio_in_chunks_with_its_transcript() -> None:
    driver = Driver("ga", chunk_ms=100)
    driver.drain()
    created = driver.send({"type": "response.create"})
    assert types(created) == ["response.created"]
    events = driver.respond([Speech("Hello there, how can I help?", tone(1050))])
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    audio = b"".join(base64.b64decode(e["delta"]) for e in deltas)
    assert len(audio) == 1050 * 24 * 2
    assert [len(base64.b64decode(e["delta"])) for e in deltas] == [4800] * 10 + [2400]
    words = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert words == "Hello there, how can I help?"
    assert types(events)[:3] == [
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert types(events)[-7:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
        "rate_limits.updated",
    ]
    done = events[-2]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0] == {
        "type": "output_audio",
        "transcript": "Hello there, how can I help?",
    }
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0


def test_beta_response_uses_beta_event_names() -> None:
    driver = Driver("beta")
    driver.send({"type": "response.create"})
    names = set(types(driver.respond(SAY)))
    assert {
        "response.audio.delta",
        "response.audio_transcript.done",
        "conversation.item.created",
    } <= names
    assert (
        not {"response.output_audio.delta", "conversation.item.added", "conversation.item.done"}
        & names
    )


def test_response_instructions_override_reaches_the_responder() -> None:
    driver = Driver("ga")
    driver.send({"type": "response.create", "response": {"instructions": "Greet the caller."}})
    [job] = driver.jobs
    assert isinstance(job, RespondJob) and job.request.instructions == "Greet the caller."


def test_response_create_while_active_is_an_error_and_keeps_the_response() -> None:
    driver = Driver("ga")
    driver.send({"type": "response.create"})
    error = error_of(driver.send({"type": "response.create"}))
    assert error["code"] == "conversation_already_has_active_response"
    assert driver.session.response is not None


def test_response_cancel_without_active_response_is_an_error() -> None:
    driver = Driver("ga")
    assert (
        error_of(driver.send({"type": "response.cancel"}))["code"] == "response_cancel_not_active"
    )


def test_response_cancel_stops_audio_and_ends_cancelled() -> None:
    driver = Driver("ga")
    driver.send({"type": "response.create"})
    job = driver.jobs.pop()
    driver.session.response_planned(job.request.response_id, SAY)
    driver.stream(steps=3)
    events = driver.send({"type": "response.cancel"})
    assert "response.output_audio.delta" not in types(events)
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["status"] == "incomplete"
    assert not driver.session.streaming and driver.stream() == []


def test_caller_speech_interrupts_the_active_response() -> None:
    driver = Driver("ga")
    driver.send({"type": "response.create"})
    job = driver.jobs.pop()
    driver.session.response_planned(job.request.response_id, SAY)
    driver.stream(steps=4)  # four 100 ms chunks of the answer sent
    events = driver.append(tone(200))
    assert types(events)[0] == "input_audio_buffer.speech_started"
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "turn_detected")
    item = driver.session.conversation.items[0]
    assert isinstance(item, MessageItem) and item.content[0].audio_ms == 400


def test_interrupt_response_false_lets_the_response_play() -> None:
    driver = Driver("ga")
    driver.send(
        ga_update(
            audio={"input": {"turn_detection": {"type": "server_vad", "interrupt_response": False}}}
        )
    )
    driver.send({"type": "response.create"})
    job = driver.jobs.pop()
    driver.session.response_planned(job.request.response_id, SAY)
    driver.stream(steps=2)
    events = driver.append(tone(200))
    assert types(events) == ["input_audio_buffer.speech_started"]
    assert driver.session.response is not None


def test_several_function_calls_in_one_response() -> None:
    driver = Driver("ga")
    driver.send({"type": "response.create"})
    events = driver.respond(
        [ToolCall("lookup", '{"q": "pipes"}', "call_1"), ToolCall("book", "{}", "call_2")]
    )
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["item"]["type"], e["item"]["name"], e["item"]["call_id"]) for e in added] == [
        ("function_call", "lookup", "call_1"),
        ("function_call", "book", "call_2"),
    ]
    args = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["call_id"], e["name"], e["arguments"]) for e in args] == [
        ("call_1", "lookup", '{"q": "pipes"}'),
        ("call_2", "book", "{}"),
    ]
    assert [o["type"] for o in events[-2]["response"]["output"]] == ["function_call"] * 2


def test_beta_function_call_arguments_done_has_no_name() -> None:
    driver = Driver("beta")
    driver.send({"type": "response.create"})
    events = driver.respond([ToolCall("lookup", "{}", "call_1")])
    [done] = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert "name" not in done and done["call_id"] == "call_1"


def test_function_call_output_round_trip() -> None:
    driver = Driver("ga")
    driver.send({"type": "response.create"})
    driver.respond([ToolCall("lookup", "{}", "call_1")])
    events = driver.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'},
        }
    )
    assert types(events) == ["conversation.item.added", "conversation.item.done"]
    driver.send({"type": "response.create"})
    job = driver.jobs.pop()
    kinds = [type(i).__name__ for i in job.request.conversation]
    assert kinds == ["FunctionCallItem", "FunctionCallOutputItem"]


def test_function_call_output_for_an_unknown_call_is_an_error() -> None:
    driver = Driver("ga")
    events = driver.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_x", "output": "{}"},
        }
    )
    assert error_of(events)["code"] == "invalid_tool_call_id"


def test_user_text_item_is_added_to_the_conversation() -> None:
    driver = Driver("ga")
    driver.drain()
    events = driver.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hi"}],
            },
        }
    )
    assert events[0]["item"]["content"] == [{"type": "input_text", "text": "Hi"}]
    [item] = driver.session.conversation.items
    assert isinstance(item, MessageItem) and item.text == "Hi"


def test_responder_failure_ends_the_response_failed() -> None:
    driver = Driver("ga")
    driver.send({"type": "response.create"})
    job = driver.jobs.pop()
    driver.session.response_failed(job.request.response_id, "model unavailable")
    [done, _limits] = driver.drain()
    assert done["response"]["status"] == "failed"


# --- truncation -------------------------------------------------------------------------------


def answered(driver: Driver, ms: int = 1000) -> str:
    driver.send({"type": "response.create"})
    driver.respond([Speech("one two three four five six seven eight nine ten", tone(ms))])
    item = driver.session.conversation.items[-1]
    assert isinstance(item, MessageItem)
    return item.id


def test_truncate_within_the_audio_cuts_audio_and_transcript() -> None:
    driver = Driver("ga")
    item_id = answered(driver, 1000)
    events = driver.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 400,
        }
    )
    assert events == [
        {
            "type": "conversation.item.truncated",
            "event_id": events[0]["event_id"],
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 400,
        }
    ]
    part = driver.session.conversation.items[-1].content[0]  # type: ignore[union-attr]
    assert part.audio_ms == 400
    assert part.transcript == "one two three four"


def test_truncate_beyond_the_audio_is_an_error() -> None:
    driver = Driver("ga")
    item_id = answered(driver, 1234)
    error = error_of(
        driver.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 1500,
            }
        )
    )
    assert (error["code"], error["message"]) == (
        "invalid_value",
        "Audio content of 1234ms is already shorter than 1500ms",
    )


def test_truncate_of_an_unknown_item_is_an_error() -> None:
    driver = Driver("ga")
    error = error_of(
        driver.send(
            {
                "type": "conversation.item.truncate",
                "item_id": "item_x",
                "content_index": 0,
                "audio_end_ms": 0,
            }
        )
    )
    assert error["code"] == "item_not_found"


def test_truncate_during_streaming_stops_the_item() -> None:
    driver = Driver("ga", config=EngineSessionConfig(turn_detection=None))
    driver.send({"type": "response.create"})
    job = driver.jobs.pop()
    driver.session.response_planned(job.request.response_id, SAY)
    driver.stream(steps=5)
    item = driver.session.conversation.items[-1]
    driver.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item.id,
            "content_index": 0,
            "audio_end_ms": 250,
        }
    )
    rest = driver.stream()
    assert "response.output_audio.delta" not in types(rest)
    assert isinstance(item, MessageItem) and item.status == "incomplete"
    assert item.content[0].audio_ms == 250


def test_delete_and_retrieve_items() -> None:
    driver = Driver("ga")
    item_id = answered(driver)
    [retrieved] = driver.send({"type": "conversation.item.retrieve", "item_id": item_id})
    assert retrieved["item"]["id"] == item_id
    [deleted] = driver.send({"type": "conversation.item.delete", "item_id": item_id})
    assert deleted["type"] == "conversation.item.deleted"
    assert driver.session.conversation.get(item_id) is None


def test_conversation_keeps_items_in_order() -> None:
    driver = Driver("ga")
    driver.send({"type": "response.create"})
    driver.respond([Speech("Hi", tone(200)), ToolCall("lookup")])
    driver.append(np.concatenate([tone(300), silence(600)]))
    kinds = [
        (type(i).__name__, getattr(i, "role", None)) for i in driver.session.conversation.items
    ]
    assert kinds == [
        ("MessageItem", "assistant"),
        ("FunctionCallItem", None),
        ("MessageItem", "user"),
    ]
    assert isinstance(driver.session.conversation.items[1], FunctionCallItem)


# --- every event the engine can send, in both dialects ----------------------------------------


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_every_kind_of_server_event_conforms(dialect: DialectName) -> None:
    driver = Driver(dialect)
    seen = types(driver.drain())
    if dialect == "ga":
        update = ga_update(
            audio={"input": {"transcription": {"model": "whisper-1", "language": "en"}}},
            tracing="auto",
            truncation="auto",
            include=["item.input_audio_transcription.logprobs"],
        )
    else:
        update = {
            "type": "session.update",
            "session": {"input_audio_transcription": {"model": "whisper-1"}, "temperature": 0.7},
        }
    seen += types(driver.send(update))
    seen += types(driver.append(np.concatenate([silence(400), tone(600), silence(700)])))
    first_user = driver.session.conversation.items[0].id
    driver.session.transcription_completed(first_user, "hello")
    driver.session.transcription_failed(first_user, "no speech")
    seen += types(driver.respond([Speech("Hi there", tone(300)), ToolCall("f", "{}", "call_1")]))
    assistant = driver.session.conversation.items[1].id
    for event in (
        {
            "type": "conversation.item.truncate",
            "item_id": assistant,
            "content_index": 0,
            "audio_end_ms": 100,
        },
        {"type": "conversation.item.retrieve", "item_id": assistant},
        {"type": "conversation.item.delete", "item_id": assistant},
        {"type": "input_audio_buffer.clear"},
        {"type": "response.cancel"},
    ):
        seen += types(driver.send(event))
    seen += types(driver.drain())
    expected = {
        "session.created",
        "session.updated",
        "error",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "conversation.item.truncated",
        "conversation.item.deleted",
        "conversation.item.retrieved",
        "response.created",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.done",
        "rate_limits.updated",
    }
    expected |= {
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
    }
    if dialect == "ga":
        expected |= {
            "conversation.item.added",
            "conversation.item.done",
            "response.output_audio.delta",
            "response.output_audio.done",
            "response.output_audio_transcript.delta",
            "response.output_audio_transcript.done",
        }
    else:
        expected |= {
            "conversation.item.created",
            "response.audio.delta",
            "response.audio.done",
            "response.audio_transcript.delta",
            "response.audio_transcript.done",
        }
    assert expected <= set(seen)
