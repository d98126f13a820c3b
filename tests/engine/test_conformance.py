"""The conformance oracle itself: it must accept what the service documents and name what
it does not."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conformance import (
    check_client_event,
    validate_client_event,
    validate_server_event,
)

GA_SESSION_UPDATE: dict[str, Any] = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "instructions": "You answer the phone.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "transcription": {"model": "gpt-4o-mini-transcribe"},
                "turn_detection": {
                    "type": "server_vad",
                    "silence_duration_ms": 500,
                    "prefix_padding_ms": 300,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
        },
        "tools": [
            {
                "type": "function",
                "name": "lookup",
                "description": "Look a thing up.",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
        ],
    },
}

BETA_SESSION_UPDATE: dict[str, Any] = {
    "type": "session.update",
    "session": {
        "modalities": ["audio", "text"],
        "voice": "alloy",
        "input_audio_format": "g711_ulaw",
        "output_audio_format": "g711_ulaw",
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
        "input_audio_transcription": {"model": "whisper-1"},
    },
}


def test_correct_ga_session_update_passes() -> None:
    assert validate_client_event(GA_SESSION_UPDATE, "ga") == []


def test_correct_beta_session_update_passes_beta() -> None:
    assert validate_client_event(BETA_SESSION_UPDATE, "beta") == []


def test_beta_shaped_session_update_fails_ga() -> None:
    assert validate_client_event(BETA_SESSION_UPDATE, "ga") == [
        "session.update: missing required field session.type"
    ]


def test_ga_shaped_session_update_fails_beta() -> None:
    problems = validate_client_event(GA_SESSION_UPDATE, "beta")
    assert "session.update: unknown field session.type" in problems
    assert "session.update: unknown field session.audio" in problems


def test_misspelled_nested_key_is_reported_with_its_path() -> None:
    event = copy.deepcopy(GA_SESSION_UPDATE)
    audio_input = event["session"]["audio"]["input"]
    audio_input["formatt"] = audio_input.pop("format")
    assert validate_client_event(event, "ga") == [
        "session.update: unknown field session.audio.input.formatt"
    ]


def test_unknown_key_inside_a_list_element_is_reported() -> None:
    event = {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "txt": "hi"}],
        },
    }
    assert validate_client_event(event, "ga") == [
        "conversation.item.create: unknown field item.content[0].txt"
    ]


def test_missing_required_field_is_reported() -> None:
    event = {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0}
    assert validate_client_event(event, "ga") == [
        "conversation.item.truncate: missing required field audio_end_ms"
    ]


def test_function_call_output_without_output_is_reported() -> None:
    event = {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "c"},
    }
    assert validate_client_event(event, "ga") == [
        "conversation.item.create: missing required field item.output"
    ]


def test_wrong_literal_names_the_choices() -> None:
    event = copy.deepcopy(GA_SESSION_UPDATE)
    event["session"]["audio"]["input"]["format"] = {"type": "audio/pcm", "rate": 16000}
    assert validate_client_event(event, "ga") == [
        "session.update: invalid value 16000 at session.audio.input.format.rate: expected 24000"
    ]


def test_unknown_event_type_is_reported() -> None:
    assert validate_client_event({"type": "response.audio.delta"}, "ga") == [
        "response.audio.delta: unknown event type 'response.audio.delta'"
    ]


def test_problems_carry_the_service_error_codes() -> None:
    event = copy.deepcopy(GA_SESSION_UPDATE)
    event["session"]["voice"] = "alloy"
    [problem] = check_client_event(event, "ga")
    assert (problem.code, problem.path) == ("unknown_parameter", "session.voice")


def test_server_events_are_checked_in_their_dialect() -> None:
    delta = {
        "type": "response.output_audio.delta",
        "event_id": "event_1",
        "response_id": "resp_1",
        "item_id": "item_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "AAAA",
    }
    assert validate_server_event(delta, "ga") == []
    assert validate_server_event(delta, "beta") == [
        "response.output_audio.delta: unknown event type 'response.output_audio.delta'"
    ]
    assert validate_server_event({**delta, "type": "response.audio.delta"}, "beta") == []


def test_server_event_without_event_id_is_reported() -> None:
    event = {"type": "input_audio_buffer.cleared"}
    assert validate_server_event(event, "ga") == [
        "input_audio_buffer.cleared: missing required field event_id"
    ]


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_free_form_json_schema_in_tool_parameters_is_not_flagged(dialect: str) -> None:
    tools = [{"type": "function", "name": "f", "parameters": {"anything": {"goes": [1]}}}]
    session: dict[str, Any] = {"tools": tools}
    if dialect == "ga":
        session["type"] = "realtime"
    assert validate_client_event({"type": "session.update", "session": session}, dialect) == []  # type: ignore[arg-type]
