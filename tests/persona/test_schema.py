"""Persona files: what is valid, and errors that name file, line, field and a fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from bridge.persona import OpeningInterval, Persona, load_personas
from tests.persona._support import WriteYaml, load_errors


def test_a_persona_file_can_be_just_name_instructions_and_greeting(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: minimal
        instructions: Be brief.
        greeting: Hello.
        """
    )
    persona = load_personas(path).default
    assert persona.name == "minimal"
    assert persona.voice == "alloy"
    assert persona.numbers == ()
    assert persona.tools.enabled == ()
    assert persona.hours is None
    assert persona.dtmf.unlisted == "to_model"
    assert persona.fallback.transfer_to is None
    assert persona.limits.max_call_seconds is None  # the server's MAX_CALL_SECONDS applies


DESK = "name: desk\ninstructions: Be brief.\ngreeting: Hello.\n"
"""The three required fields (lines 1-3); a case's YAML starts at line 4."""


@pytest.mark.parametrize(
    ("tail", "line", "message"),
    [
        pytest.param(
            """
            voise: coral
            """,
            4,
            "voise: unknown field 'voise'; did you mean 'voice'?",
            id="unknown-field-suggests-the-close-one",
        ),
        pytest.param(
            """
            turn_detection:
              type: server_vad
              silence_duraton_ms: 500
            """,
            6,
            "turn_detection.silence_duraton_ms: unknown field 'silence_duraton_ms'; "
            "did you mean 'silence_duration_ms'?",
            id="unknown-nested-field-names-its-dotted-path",
        ),
        pytest.param(
            """
            tools:
              end_call:
              websearch:
                max_results: 2
            """,
            6,
            "tools.websearch: unknown tool 'websearch'; did you mean 'web_search'?",
            id="unknown-tool-suggests-the-tool-it-resembles",
        ),
        pytest.param(
            """
            fallback:
              xyzzy: 1
            """,
            5,
            "fallback.xyzzy: unknown field 'xyzzy'; allowed: say, transfer_to, hangup",
            id="unknown-field-without-close-match-lists-the-allowed-ones",
        ),
        pytest.param(
            """

            speed: 3
            """,
            5,
            "speed: input should be less than or equal to 1.5 (got 3)",
            id="bad-value-points-at-its-line-past-a-blank-one-and-shows-the-value",
        ),
        pytest.param(
            """
            numbers:
              - "+1 212 555 0100"
              - "212 555 0101"
            """,
            6,
            "numbers[1]: not an E.164 number: '212 555 0101'; write '+', the country "
            'code and the number, in quotes (e.g. "+1 212 555 0100")',
            id="error-in-a-list-item-points-at-that-item",
        ),
        pytest.param(
            """
            voice: coral
            voice: sage
            """,
            5,
            "voice: duplicate key (first at line 4)",
            id="duplicate-key-names-both-lines",
        ),
        pytest.param(
            """
            transfer_targets:
              operator: {number: "+12125550110"}
            dtmf:
              menu:
                0:
                  action: transfer
                  target: operater
            """,
            10,
            "dtmf.menu[\"0\"].target: unknown transfer target 'operater' "
            "(transfer_targets: operator)",
            id="dtmf-transfer-to-unknown-target-is-an-error-at-the-target",
        ),
        pytest.param(
            """
            dtmf:
              menu:
                "#":
                  action: end_call
                  text: Bye.
            """,
            8,
            'dtmf.menu["#"].text: only for action say (this is end_call)',
            id="dtmf-action-arguments-must-fit-the-action",
        ),
        pytest.param(
            """
            fallback:
              transfer_to: operator
            """,
            5,
            "fallback.transfer_to: unknown transfer target 'operator' "
            "(transfer_targets: none defined)",
            id="fallback-transfer-to-unknown-target",
        ),
        pytest.param(
            """
            tools:
              transfer_call:
            """,
            5,
            "tools.transfer_call: transfer_call needs at least one entry in transfer_targets",
            id="transfer-call-tool-needs-transfer-targets",
        ),
        pytest.param(
            """
            turn_detection:
              type: semantic_vad
              eagerness: low
              silence_duration_ms: 400
            """,
            7,
            "turn_detection.silence_duration_ms: only for type server_vad (this is semantic_vad)",
            id="semantic-vad-rejects-server-vad-settings",
        ),
        pytest.param(
            """
            hours:
              timezone: Europe/Londn
            """,
            5,
            "hours.timezone: unknown time zone 'Europe/Londn'; did you mean 'Europe/London'?",
            id="unknown-time-zone-suggests-the-iana-name",
        ),
        pytest.param(
            """
            hours:
              weekly:
                munday: "09:00-17:00"
            """,
            6,
            "hours.weekly.munday: unknown weekday 'munday'; did you mean 'monday' or 'sunday'?",
            id="weekday-names-are-checked-with-a-suggestion",
        ),
        pytest.param(
            """
            hours:
              weekly:
                friday: ["13:00-17:00", "08:00-13:30"]
            """,
            6,
            "hours.weekly.friday: intervals 08:00-13:30 and 13:00-17:00 overlap",
            id="overlapping-intervals",
        ),
        pytest.param(
            """
            tools: [web_search, end_call]
            """,
            4,
            "tools: expected a mapping (`key: value` lines), got a list",
            id="a-list-where-a-mapping-belongs-is-explained-in-yaml-terms",
        ),
    ],
)
def test_an_error_names_file_line_field_and_reason(
    write_yaml: WriteYaml, tail: str, line: int, message: str
) -> None:
    # removeprefix, not lstrip: a blank first line of `tail` is line 4 of the file.
    path = write_yaml(DESK + textwrap.dedent(tail).removeprefix("\n"))
    assert load_errors(path) == [f"{path}:{line}: {message}"]


@pytest.mark.parametrize(
    ("text", "line", "start"),
    [
        pytest.param(
            """
            personas:
              - name: one
                instructions: Be brief.
                greeting: Hello.
            voice: coral
            """,
            5,
            "voice: a file with a `personas:` list holds nothing else",
            id="a-personas-list-file-holds-nothing-else",
        ),
        pytest.param(
            """
            name: desk
            instructions: Be brief.
            greeting: "Hello.
            voice: coral
            """,
            5,
            "YAML syntax: ",
            id="yaml-syntax-error-names-the-line",
        ),
        pytest.param("# nothing here\n", None, "empty file", id="empty-file"),
        pytest.param(
            "- name: desk\n",
            1,
            "(persona): expected a mapping of persona fields",
            id="a-list-is-not-a-persona",
        ),
        pytest.param(
            """
            name: front desk
            instructions: Be brief.
            greeting: Hello.
            """,
            1,
            "name: 'front desk' is not a persona name",
            id="persona-name-must-be-a-token",
        ),
    ],
)
def test_a_file_level_error_is_the_only_error(
    write_yaml: WriteYaml, text: str, line: int | None, start: str
) -> None:
    path = write_yaml(text)
    (error,) = load_errors(path)
    where = f"{path}:{line}" if line is not None else f"{path}"
    assert error.startswith(f"{where}: {start}")


def test_bad_literal_suggests_the_valid_spelling(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        turn_detection:
          type: semantic-vad
        """
    )
    (error,) = load_errors(path)
    assert error.startswith(f"{path}:5: turn_detection.type: input should be ")
    assert error.endswith("(got 'semantic-vad'); did you mean 'semantic_vad'?")


def test_missing_required_field_points_at_the_persona(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        # a comment first
        name: desk
        greeting: Hello.
        """
    )
    assert load_errors(path) == [f"{path}:2: instructions: required field is missing"]


def test_every_error_of_a_file_is_reported_in_line_order(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        language: english
        voice: ""
        tools:
          web_search:
            max_results: 0
        """
    )
    errors = load_errors(path)
    assert [e.split(": ")[0:2] for e in errors] == [
        [f"{path}:4", "language"],
        [f"{path}:5", "voice"],
        [f"{path}:8", "tools.web_search.max_results"],
    ]
    assert "ISO-639-1" in errors[0]


def test_errors_in_a_personas_list_carry_the_item_index(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        personas:
          - name: one
            instructions: Be brief.
            greeting: Hello.
            default: true
          - name: two
            instructions: Be brief.
            greeting: Hello.
            speeed: 1.0
        """
    )
    assert load_errors(path) == [
        f"{path}:9: personas[1].speeed: unknown field 'speeed'; did you mean 'speed'?"
    ]


def test_yaml_11_traps_are_disarmed(write_yaml: WriteYaml) -> None:
    # `no` is Norwegian, not False; an unquoted +1… is a phone number, not an integer.
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        language: no
        numbers: [+12125550100]
        default: true
        """
    )
    persona = load_personas(path).default
    assert persona.language == "no"
    assert persona.numbers == ("+12125550100",)
    assert persona.default is True


def test_numbers_are_normalised_to_e164(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        numbers: "+1 (212) 555-0100"
        """
    )
    assert load_personas(path).default.numbers == ("+12125550100",)


def test_dtmf_menu_reads_digit_keys_and_quoted_star_and_hash(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        dtmf:
          menu:
            1: {action: say, text: "Open nine to five."}
            "*": {action: to_model}
            "#": {action: end_call}
          unlisted: ignore
        """
    )
    persona = load_personas(path).default
    assert sorted(persona.dtmf.menu) == ["#", "*", "1"]
    assert persona.dtmf_action("1").text == "Open nine to five."  # type: ignore[union-attr]
    assert persona.dtmf_action("5") is None  # unlisted: ignore


def test_unlisted_digits_go_to_the_model_by_default() -> None:
    persona = Persona(instructions="x", greeting="y")
    action = persona.dtmf_action("7")
    assert action is not None and action.action == "to_model"


@pytest.mark.parametrize(
    ("interval", "reason"),
    [
        ("9-17", "not an opening interval: '9-17'; write \"09:00-17:30\""),
        ("09:00-25:00", "not a time of day in '09:00-25:00'"),
        (
            "22:00-02:00",
            "'22:00-02:00' ends before it starts; split an interval past midnight over two days",
        ),
    ],
)
def test_bad_opening_intervals_are_explained(
    write_yaml: WriteYaml, interval: str, reason: str
) -> None:
    path = write_yaml(
        f"""
        name: desk
        instructions: Be brief.
        greeting: Hello.
        hours:
          weekly:
            friday:
              - "08:00-12:00"
              - "{interval}"
        """
    )
    assert load_errors(path) == [f"{path}:8: hours.weekly.friday[1]: {reason}"]


def test_intervals_are_parsed_sorted_and_may_end_at_midnight(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        hours:
          weekly:
            friday: ["18:00-24:00", "08:30-12:00"]
            saturday: closed
        """
    )
    weekly = load_personas(path).default.hours.weekly  # type: ignore[union-attr]
    assert weekly is not None
    assert weekly.friday == (OpeningInterval(510, 720), OpeningInterval(1080, 1440))
    assert weekly.saturday == ()
    assert str(weekly.friday[1]) == "18:00-24:00"


def test_personas_built_in_code_are_validated_too() -> None:
    with pytest.raises(ValidationError, match="unknown placeholder"):
        Persona(instructions="Hi {caller}", greeting="Hello")


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert load_errors(missing) == [f"{missing}: no such file or directory"]


def test_empty_sections_take_their_defaults(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        numbers:
        tools:
        dtmf:
        limits:
        speed: +1.0
        """
    )
    persona = load_personas(path).default
    assert persona.numbers == ()
    assert persona.tools.enabled == ()
    assert persona.speed == 1.0
