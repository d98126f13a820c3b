"""Persona files: what is valid, and errors that name file, line, field and a fix."""

from __future__ import annotations

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


def test_unknown_field_is_rejected_with_line_and_suggestion(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        voise: coral
        """
    )
    assert load_errors(path) == [f"{path}:4: voise: unknown field 'voise'; did you mean 'voice'?"]


def test_unknown_nested_field_names_its_dotted_path(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        turn_detection:
          type: server_vad
          silence_duraton_ms: 500
        """
    )
    assert load_errors(path) == [
        f"{path}:6: turn_detection.silence_duraton_ms: unknown field 'silence_duraton_ms'; "
        "did you mean 'silence_duration_ms'?"
    ]


def test_unknown_tool_is_rejected_with_the_tool_it_resembles(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        tools:
          end_call:
          websearch:
            max_results: 2
        """
    )
    assert load_errors(path) == [
        f"{path}:6: tools.websearch: unknown tool 'websearch'; did you mean 'web_search'?"
    ]


def test_unknown_field_with_no_close_match_lists_the_allowed_ones(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        fallback:
          xyzzy: 1
        """
    )
    assert load_errors(path) == [
        f"{path}:5: fallback.xyzzy: unknown field 'xyzzy'; allowed: say, transfer_to, hangup"
    ]


def test_bad_value_points_at_its_line_and_shows_the_value(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.

        speed: 3
        """
    )
    assert load_errors(path) == [
        f"{path}:5: speed: input should be less than or equal to 1.5 (got 3)"
    ]


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


def test_error_in_a_list_item_points_at_that_item(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        numbers:
          - "+1 212 555 0100"
          - "212 555 0101"
        """
    )
    assert load_errors(path) == [
        f"{path}:6: numbers[1]: not an E.164 number: '212 555 0101'; write '+', the country "
        'code and the number, in quotes (e.g. "+1 212 555 0100")'
    ]


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


def test_personas_list_file_holds_nothing_else(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        personas:
          - name: one
            instructions: Be brief.
            greeting: Hello.
        voice: coral
        """
    )
    (error,) = load_errors(path)
    assert error.startswith(f"{path}:5: voice: a file with a `personas:` list holds nothing else")


def test_yaml_syntax_error_names_the_line(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: "Hello.
        voice: coral
        """
    )
    (error,) = load_errors(path)
    assert error.startswith(f"{path}:5: YAML syntax: ")


def test_duplicate_key_is_an_error_naming_both_lines(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        voice: coral
        voice: sage
        """
    )
    assert load_errors(path) == [f"{path}:5: voice: duplicate key (first at line 4)"]


def test_empty_file_is_an_error(write_yaml: WriteYaml) -> None:
    path = write_yaml("# nothing here\n")
    (error,) = load_errors(path)
    assert error.startswith(f"{path}: empty file")


def test_a_list_is_not_a_persona(write_yaml: WriteYaml) -> None:
    path = write_yaml("- name: desk\n")
    (error,) = load_errors(path)
    assert error.startswith(f"{path}:1: (persona): expected a mapping of persona fields")


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


def test_dtmf_transfer_to_unknown_target_is_an_error_at_the_target(
    write_yaml: WriteYaml,
) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        transfer_targets:
          operator: {number: "+12125550110"}
        dtmf:
          menu:
            0:
              action: transfer
              target: operater
        """
    )
    assert load_errors(path) == [
        f"{path}:10: dtmf.menu[\"0\"].target: unknown transfer target 'operater' "
        "(transfer_targets: operator)"
    ]


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


def test_dtmf_action_arguments_must_fit_the_action(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        dtmf:
          menu:
            "#":
              action: end_call
              text: Bye.
        """
    )
    assert load_errors(path) == [
        f'{path}:8: dtmf.menu["#"].text: only for action say (this is end_call)'
    ]


def test_fallback_transfer_to_unknown_target_is_an_error(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        fallback:
          transfer_to: operator
        """
    )
    assert load_errors(path) == [
        f"{path}:5: fallback.transfer_to: unknown transfer target 'operator' "
        "(transfer_targets: none defined)"
    ]


def test_transfer_call_tool_needs_transfer_targets(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        tools:
          transfer_call:
        """
    )
    assert load_errors(path) == [
        f"{path}:5: tools.transfer_call: transfer_call needs at least one entry in transfer_targets"
    ]


def test_semantic_vad_rejects_server_vad_settings(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        turn_detection:
          type: semantic_vad
          eagerness: low
          silence_duration_ms: 400
        """
    )
    assert load_errors(path) == [
        f"{path}:7: turn_detection.silence_duration_ms: only for type server_vad "
        "(this is semantic_vad)"
    ]


def test_unknown_time_zone_suggests_the_iana_name(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        hours:
          timezone: Europe/Londn
        """
    )
    assert load_errors(path) == [
        f"{path}:5: hours.timezone: unknown time zone 'Europe/Londn'; did you mean 'Europe/London'?"
    ]


def test_weekday_names_are_checked_with_a_suggestion(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        hours:
          weekly:
            munday: "09:00-17:00"
        """
    )
    assert load_errors(path) == [
        f"{path}:6: hours.weekly.munday: unknown weekday 'munday'; "
        "did you mean 'monday' or 'sunday'?"
    ]


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


def test_overlapping_intervals_are_an_error(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        hours:
          weekly:
            friday: ["13:00-17:00", "08:00-13:30"]
        """
    )
    assert load_errors(path) == [
        f"{path}:6: hours.weekly.friday: intervals 08:00-13:30 and 13:00-17:00 overlap"
    ]


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


def test_persona_name_must_be_a_token(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: front desk
        instructions: Be brief.
        greeting: Hello.
        """
    )
    (error,) = load_errors(path)
    assert error.startswith(f"{path}:1: name: 'front desk' is not a persona name")


def test_personas_built_in_code_are_validated_too() -> None:
    with pytest.raises(ValidationError, match="unknown placeholder"):
        Persona(instructions="Hi {caller}", greeting="Hello")


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert load_errors(missing) == [f"{missing}: no such file or directory"]


def test_a_list_where_a_mapping_belongs_is_explained_in_yaml_terms(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        tools: [web_search, end_call]
        """
    )
    assert load_errors(path) == [
        f"{path}:4: tools: expected a mapping (`key: value` lines), got a list"
    ]


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
