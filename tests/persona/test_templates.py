"""Persona texts are templates: filled per call, and checked when the persona loads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.persona import PLACEHOLDERS, Hours, Persona, load_personas
from tests.persona._support import WriteYaml, load_errors

# Tuesday 4 March 2025, 14:05 UTC: 09:05 in New York (EST, UTC-5).
AT = datetime(2025, 3, 4, 14, 5, tzinfo=UTC)


def _persona(**fields: object) -> Persona:
    values: dict[str, object] = {"name": "desk", "instructions": "x", "greeting": "y"}
    values.update(fields)
    return Persona.model_validate(values)


def test_every_placeholder_is_filled_on_the_personas_clock() -> None:
    persona = _persona(
        business_name="Maple Street Dental",
        instructions="{persona_name} at {business_name}; {today}, {now}; caller {caller_number}",
        hours=Hours(timezone="America/New_York"),
    )
    assert persona.instructions_for(AT, "+12125550199") == (
        "desk at Maple Street Dental; Tuesday 4 March 2025, 09:05; caller +12125550199"
    )


def test_without_hours_the_clock_is_utc() -> None:
    assert _persona(greeting="It is {now} on {today}.").greeting_for(AT) == (
        "It is 14:05 on Tuesday 4 March 2025."
    )


def test_date_follows_the_time_zone_across_midnight() -> None:
    # 02:30 UTC on Wednesday is still Tuesday evening in New York.
    persona = _persona(greeting="{today} {now}", hours=Hours(timezone="America/New_York"))
    assert persona.greeting_for(datetime(2025, 3, 5, 2, 30, tzinfo=UTC)) == (
        "Tuesday 4 March 2025 21:30"
    )


def test_unknown_caller_reads_as_unknown() -> None:
    assert _persona(greeting="Calling from {caller_number}").greeting_for(AT) == (
        "Calling from unknown"
    )


def test_double_braces_are_literal_braces() -> None:
    persona = _persona(instructions='Reply as JSON like {{"ok": true}} for {business_name}.')
    assert persona.instructions_for(AT) == 'Reply as JSON like {"ok": true} for our office.'


def test_render_fills_any_persona_text() -> None:
    persona = _persona(business_name="Northwind")
    assert persona.render("Thanks for calling {business_name}.", AT) == (
        "Thanks for calling Northwind."
    )


def test_placeholders_are_the_documented_five() -> None:
    assert PLACEHOLDERS == ("business_name", "caller_number", "now", "persona_name", "today")


def test_unknown_placeholder_names_the_key_and_lists_the_allowed(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Hello {customer}.
        greeting: Hello.
        """
    )
    assert load_errors(path) == [
        f"{path}:2: instructions: unknown placeholder {{customer}}; allowed: "
        "{business_name}, {caller_number}, {now}, {persona_name}, {today} "
        "(write {{ and }} for literal braces)"
    ]


def test_misspelt_placeholder_gets_a_suggestion(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Hello.
        greeting: "Hi {caller_numbr}"
        """
    )
    (error,) = load_errors(path)
    assert error.startswith(
        f"{path}:3: greeting: unknown placeholder {{caller_numbr}}; "
        "did you mean {caller_number}? allowed: "
    )


def test_placeholder_error_in_a_block_names_the_line_inside_it(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        greeting: Hello.
        instructions: |
          You answer for {business_name}.
          It is {today}.
          The caller is {caller}.
          Be brief.
        """
    )
    (error,) = load_errors(path)
    assert error.startswith(f"{path}:6: instructions: unknown placeholder {{caller}};")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Hi {", "unclosed '{'; write {{ for a literal brace"),
        ("Hi }", "single '}'; write }} for a literal brace"),
        (
            "Hi {}",
            "empty placeholder {}; use one of {business_name}, {caller_number}, {now}, "
            "{persona_name}, {today}, or {{ }} for braces",
        ),
    ],
)
def test_stray_braces_are_errors(write_yaml: WriteYaml, text: str, reason: str) -> None:
    path = write_yaml(
        f"""
        name: desk
        instructions: Hello.
        greeting: "{text}"
        """
    )
    assert load_errors(path) == [f"{path}:3: greeting: {reason}"]


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("hours:\n  after_hours_greeting: We are closed, {name}.", 5),
        ("fallback:\n  say: Sorry {name}.", 5),
        ("limits:\n  idle_reprompt: Still there {name}?", 5),
        ("tools:\n  end_call:\n    filler: Bye {name}.", 6),
        ("dtmf:\n  menu:\n    9: {action: say, text: 'Open {name}'}", 6),
    ],
)
def test_every_spoken_text_is_checked(write_yaml: WriteYaml, section: str, line: int) -> None:
    path = write_yaml("name: desk\ninstructions: Hello.\ngreeting: Hello.\n" + section + "\n")
    (error,) = load_errors(path)
    assert error.startswith(f"{path}:{line}: ")
    assert ": unknown placeholder {name};" in error


def test_templates_render_from_a_loaded_file(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        name: desk
        business_name: Maple Street Dental
        instructions: |
          You are {persona_name} at {business_name}.
          Caller: {caller_number}.
        greeting: Welcome to {business_name}!
        """
    )
    persona = load_personas(path).default
    assert persona.greeting_for(AT) == "Welcome to Maple Street Dental!"
    assert persona.instructions_for(AT, "+441234567890") == (
        "You are desk at Maple Street Dental.\nCaller: +441234567890.\n"
    )
