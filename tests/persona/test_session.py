"""The session.update each shipped persona produces: valid in both dialects per the `openai`
package's models, and carrying the persona's voice, turn detection and instructions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.audio_format import AudioFormat
from bridge.persona import DEFAULT_PERSONA, Persona, load_personas
from bridge.realtime.dialect import Dialect, DialectName
from bridge.realtime.events import FunctionTool
from tests.conformance import validate_client_event
from tests.persona._support import EXAMPLES

EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
# Tuesday 4 March 2025, 15:00 UTC: 10:00 in New York, the receptionist is open.
AT = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)
# A tool as the tools module will build it; its schema is not the persona's business.
END_CALL = FunctionTool(
    name="end_call",
    description="Hang up once the caller is done.",
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
)


def _example(file: str) -> Persona:
    return load_personas(EXAMPLES / file).default


def _session_update(
    persona: Persona, dialect: DialectName, audio: AudioFormat = AudioFormat.PCM16
) -> dict[str, Any]:
    config = persona.session_config(audio, caller_number="+12125550199", tools=(END_CALL,), at=AT)
    event: dict[str, Any] = json.loads(Dialect(dialect).session_update(config))
    return event


def test_the_three_documented_examples_ship() -> None:
    assert EXAMPLE_FILES == ["default.yaml", "receptionist.yaml", "support.yaml"]


@pytest.mark.parametrize("audio", ["pcm16", "pcmu"])
@pytest.mark.parametrize("dialect", ["ga", "beta"])
@pytest.mark.parametrize("file", EXAMPLE_FILES)
def test_session_update_of_each_example_conforms(
    file: str, dialect: DialectName, audio: AudioFormat
) -> None:
    event = _session_update(_example(file), dialect, audio)
    assert validate_client_event(event, dialect) == []


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_the_conformance_check_would_catch_an_unknown_key(dialect: DialectName) -> None:
    event = _session_update(DEFAULT_PERSONA, dialect)
    event["session"]["persona_name"] = "default"
    assert validate_client_event(event, dialect) != []


@pytest.mark.parametrize("file", EXAMPLE_FILES)
def test_ga_session_carries_the_personas_settings(file: str) -> None:
    persona = _example(file)
    session = _session_update(persona, "ga")["session"]
    assert session["instructions"] == persona.instructions_for(AT, "+12125550199")
    assert "+12125550199" in session["instructions"]
    assert session["audio"]["output"]["voice"] == persona.voice
    turn = session["audio"]["input"]["turn_detection"]
    expected = persona.turn_detection.model_dump(exclude_none=True)
    assert {k: turn[k] for k in expected} == expected
    assert [t["name"] for t in session["tools"]] == ["end_call"]


def test_receptionist_session_in_both_dialects() -> None:
    receptionist = _example("receptionist.yaml")
    ga = _session_update(receptionist, "ga")["session"]
    beta = _session_update(receptionist, "beta")["session"]
    assert ga["audio"]["output"]["voice"] == beta["voice"] == "coral"
    assert ga["audio"]["output"]["speed"] == beta["speed"] == 1.0
    vad = {
        "type": "server_vad",
        "threshold": 0.6,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 600,
        "create_response": True,
        "interrupt_response": True,
    }
    assert ga["audio"]["input"]["turn_detection"] == beta["turn_detection"] == vad
    assert (
        ga["audio"]["input"]["transcription"]
        == beta["input_audio_transcription"]
        == {
            "model": "gpt-4o-mini-transcribe",
            "language": "en",
        }
    )
    assert ga["instructions"].startswith("You are the receptionist of Maple Street Dental")
    assert "It is Tuesday 4 March 2025, 10:00 local time." in ga["instructions"]


def test_support_session_uses_semantic_vad() -> None:
    session = _session_update(_example("support.yaml"), "ga")["session"]
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": True,
    }
    assert session["audio"]["output"]["voice"] == "marin"


def test_support_example_caps_web_search_results() -> None:
    support = _example("support.yaml")
    assert support.tools.enabled == ("web_search", "end_call")
    assert support.tools.web_search is not None
    assert support.tools.web_search.max_chars == 1500
    assert support.fallback_plan(AT).transfer_number is None


def test_receptionist_example_wires_menu_targets_and_fallback() -> None:
    receptionist = _example("receptionist.yaml")
    operator = receptionist.dtmf_action("0")
    assert operator is not None and operator.action == "transfer"
    assert receptionist.transfer_targets[operator.target or ""].number == "+12125550110"
    plan = receptionist.fallback_plan(AT)
    assert plan.transfer_number == "+12125550110"
    assert plan.say.startswith("Sorry, our phone assistant is unavailable.")


def test_default_yaml_is_the_builtin_default_persona() -> None:
    assert _example("default.yaml") == DEFAULT_PERSONA


def test_session_config_keeps_the_call_sites_signature() -> None:
    # stream.py calls it like this; the clock defaults to now.
    config = DEFAULT_PERSONA.session_config("pcmu", caller_number="+12125550199")
    assert config.audio_format == "pcmu"
    assert config.tools == ()
    assert "+12125550199" in config.instructions
