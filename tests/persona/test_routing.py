"""Choosing the persona: by the called number, by name (the stream's lookup), or the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.persona import DEFAULT_PERSONA, Persona, PersonaBook, PersonaError, load_personas
from tests.persona._support import EXAMPLES, WriteYaml, load_errors


def _persona_yaml(name: str, *numbers: str, default: bool = False) -> str:
    lines = [f"name: {name}", "instructions: Be brief.", "greeting: Hello."]
    if numbers:
        lines.append("numbers: [" + ", ".join(f'"{n}"' for n in numbers) + "]")
    if default:
        lines.append("default: true")
    return "\n".join(lines) + "\n"


@pytest.fixture
def book(write_yaml: WriteYaml) -> PersonaBook:
    general = write_yaml(_persona_yaml("general", default=True), "personas/general.yaml")
    write_yaml(_persona_yaml("sales", "+12125550100", "+12125550101"), "personas/sales.yml")
    write_yaml(_persona_yaml("support", "+4420 7946 0958"), "personas/support.yaml")
    write_yaml("not: a persona", "personas/notes.txt")
    write_yaml("name: [broken", "personas/.hidden.yaml")
    return load_personas(general.parent)


def test_a_directory_loads_every_yaml_and_yml_file(book: PersonaBook) -> None:
    assert [p.name for p in book] == ["general", "sales", "support"]
    assert len(book) == 3


def test_called_number_picks_its_persona(book: PersonaBook) -> None:
    assert book.for_number("+12125550101").name == "sales"
    assert book.for_number("+442079460958").name == "support"


def test_called_number_is_matched_after_dropping_spaces_and_dashes(book: PersonaBook) -> None:
    assert book.for_number("+1 212-555-0100").name == "sales"


@pytest.mark.parametrize("to", ["+15550000000", "", "client:alice", "sip:desk@example.com"])
def test_any_other_called_number_gets_the_default(book: PersonaBook, to: str) -> None:
    assert book.for_number(to).name == "general"
    assert book.default.name == "general"


def test_lookup_by_name_for_the_stream(book: PersonaBook) -> None:
    assert book.get("support") is book.for_number("+442079460958")
    assert book.get("nobody") is None
    assert "sales" in book


def test_persona_chosen_at_the_webhook_is_found_again_by_name(book: PersonaBook) -> None:
    # The webhook sends `persona.name` as a <Parameter>; the stream, maybe on another replica
    # with the same files, looks it up. Names are tokens, safe in TwiML and logs.
    chosen = book.for_number("+12125550100")
    assert book.get(chosen.name) == chosen


def test_one_persona_without_a_default_flag_is_the_default(write_yaml: WriteYaml) -> None:
    book = load_personas(write_yaml(_persona_yaml("only", "+12125550100")))
    assert book.default.name == "only"
    assert book.for_number("+19999999999").name == "only"


def test_a_personas_list_in_one_file(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        personas:
          - name: main
            default: true
            instructions: Be brief.
            greeting: Hello.
          - name: night
            numbers: ["+12125550199"]
            instructions: Be brief.
            greeting: Good evening.
        """
    )
    book = load_personas(path)
    assert book.for_number("+12125550199").greeting == "Good evening."
    assert book.default.name == "main"


def test_several_personas_need_a_default(write_yaml: WriteYaml) -> None:
    write_yaml(_persona_yaml("a", "+12125550100"), "dir/a.yaml")
    path = write_yaml(_persona_yaml("b", "+12125550101"), "dir/b.yaml").parent
    assert load_errors(path) == [
        f"{path}: no default persona among 2 (a, b): mark the one that answers unrouted "
        "numbers with `default: true`"
    ]


def test_two_defaults_are_an_error_naming_both(write_yaml: WriteYaml) -> None:
    a = write_yaml(_persona_yaml("a", default=True), "dir/a.yaml")
    b = write_yaml(_persona_yaml("b", default=True), "dir/b.yaml")
    assert load_errors(a.parent) == [
        f"{b}:4: default: persona 'b' is a second default; 'a' at {a}:4 is already the default"
    ]


def test_duplicate_names_across_files_are_an_error(write_yaml: WriteYaml) -> None:
    a = write_yaml(_persona_yaml("desk", default=True), "dir/a.yaml")
    b = write_yaml(_persona_yaml("desk", "+12125550100"), "dir/b.yaml")
    assert load_errors(a.parent) == [f"{b}:1: name: persona 'desk' is already defined at {a}:1"]


def test_a_number_routed_to_two_personas_is_an_error(write_yaml: WriteYaml) -> None:
    a = write_yaml(_persona_yaml("a", "+12125550100", default=True), "dir/a.yaml")
    b = write_yaml(_persona_yaml("b", "+44 20 7946 0958", "+1 212 555 0100"), "dir/b.yaml")
    assert load_errors(a.parent) == [
        f"{b}:4: numbers[1]: +12125550100 is already routed to persona 'a' at {a}:4"
    ]


def test_errors_from_several_files_and_across_them_are_all_reported(write_yaml: WriteYaml) -> None:
    # Each persona is invalid, and the folder would still fail once both were fixed: the
    # missing default is reported in the same run, not after the fields are fixed.
    a = write_yaml("name: a\ngreeting: Hi.\n", "dir/a.yaml")
    b = write_yaml("name: b\ninstructions: x\n", "dir/b.yaml")
    assert load_errors(a.parent) == [
        f"{a}:1: instructions: required field is missing",
        f"{b}:1: greeting: required field is missing",
        f"{a.parent}: no default persona among 2 (a, b): mark the one that answers unrouted "
        "numbers with `default: true`",
    ]


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert load_errors(tmp_path / "empty") == [
        f"{tmp_path / 'empty'}: no persona files (*.yaml, *.yml) in this directory"
    ]


def test_builtin_book_holds_only_the_default_persona() -> None:
    book = PersonaBook.builtin()
    assert list(book) == [DEFAULT_PERSONA]
    assert book.for_number("+12125550100") is DEFAULT_PERSONA
    assert book.get("default") is DEFAULT_PERSONA


def test_a_book_built_in_code_checks_the_same_rules() -> None:
    one = Persona(name="a", numbers=("+12125550100",), instructions="x", greeting="y")
    two = Persona(name="b", numbers=("+1 212 555 0100",), instructions="x", greeting="y")
    with pytest.raises(PersonaError, match=r"\+12125550100 is already routed to persona 'a'"):
        PersonaBook([one.model_copy(update={"default": True}), two])


def test_warns_about_a_persona_no_call_can_reach(write_yaml: WriteYaml) -> None:
    write_yaml(_persona_yaml("main", default=True), "dir/a.yaml")
    book = load_personas(write_yaml(_persona_yaml("orphan"), "dir/b.yaml").parent)
    assert book.warnings() == [
        "persona 'orphan' has no numbers and is not the default: no call reaches it"
    ]


def test_the_shipped_personas_folder_loads_as_one_book() -> None:
    book = load_personas(EXAMPLES)
    assert [p.name for p in book] == ["default", "receptionist", "support"]
    assert book.default.name == "default"
    assert book.for_number("+12125550100").name == "receptionist"
    assert book.for_number("+14155550142").name == "support"
    assert book.warnings() == []
