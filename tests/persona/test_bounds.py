"""Persona files are read within bounds: size, nesting, and what their aliases expand to.

Before the bounds, a 473-byte "billion laughs" file kept `persona check` and the server's
start-up at 100 % CPU for over a minute, and a recursive alias crashed them with a
RecursionError. The time limits here are loose guards against a hang, not speed claims.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge.persona import (
    MAX_PERSONA_FILE_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    check_command,
    load_personas,
    yaml_reader,
)
from bridge.persona.source import MAX_ERRORS_PER_FILE
from tests.persona._support import REPO, WriteYaml, load_errors

PERSONA = "name: desk\ninstructions: Be brief.\ngreeting: Hello.\n"


def _billion_laughs() -> str:
    """Nine levels of nine aliases each: 9⁹ (387 million) strings in under 500 bytes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n" + PERSONA


def test_an_alias_bomb_is_refused_at_the_line_that_crosses_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_billion_laughs(), encoding="utf-8")
    assert path.stat().st_size < 600
    started = time.monotonic()
    errors = load_errors(path)
    elapsed = time.monotonic() - started
    # Level e stands for 1 + 9 * (1 + 9 * (1 + 9 * (1 + 9 * 10))) = 66 430 nodes.
    assert errors == [
        f"{path}:5: more than {MAX_YAML_NODES} YAML nodes once aliases are expanded; refused "
        "(a persona has a few hundred: an alias bomb?)"
    ]
    assert elapsed < 5.0


def test_persona_check_refuses_the_bomb_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_billion_laughs(), encoding="utf-8")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "persona", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:5: more than {MAX_YAML_NODES} YAML nodes once aliases are expanded; refused "
        "(a persona has a few hundred: an alias bomb?)"
    ]
    assert elapsed < 30.0  # the interpreter's start included; before the bound: over 60 s


def test_aliases_count_with_everything_they_stand_for(monkeypatch: pytest.MonkeyPatch) -> None:
    # The outer list, the anchored list (3 nodes) and two aliases of it (3 nodes each).
    monkeypatch.setattr(yaml_reader, "MAX_YAML_NODES", 10)
    doc = yaml_reader.parse("[&a [x, y], *a, *a]")
    assert doc is not None
    assert doc.data == [["x", "y"]] * 3
    with pytest.raises(yaml_reader.YamlRefused) as info:
        yaml_reader.parse("[&a [x, y], *a, *a, z]")
    assert info.value.line == 1


def test_a_recursive_alias_is_refused_not_a_crash(write_yaml: WriteYaml) -> None:
    path = write_yaml(PERSONA + "tools: &t\n  end_call: *t\n")
    assert load_errors(path) == [
        f"{path}:5: alias *t is inside its own anchor &t; recursive aliases are refused"
    ]


def test_nesting_past_the_limit_is_refused_at_its_line(write_yaml: WriteYaml) -> None:
    deep = "[" * 2000 + "]" * 2000  # the composer recursed once per level: a RecursionError
    path = write_yaml(PERSONA + f"hours:\n  weekly: {deep}\n")
    assert load_errors(path) == [
        f"{path}:5: nested deeper than {MAX_YAML_DEPTH} levels; refused (a persona needs 6)"
    ]


def test_a_file_over_the_size_limit_is_refused_naming_file_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    padding = "#" * (MAX_PERSONA_FILE_BYTES + 1 - len(PERSONA) - 1)
    path.write_text(PERSONA + padding + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_PERSONA_FILE_BYTES + 1 == 262_145
    assert load_errors(path) == [
        f"{path}: file too large (262145 bytes); a persona file may hold at most 262144 bytes "
        "(256 KiB)"
    ]


def test_a_file_of_exactly_the_size_limit_loads(tmp_path: Path) -> None:
    path = tmp_path / "full.yaml"
    padding = "#" * (MAX_PERSONA_FILE_BYTES - len(PERSONA) - 1)
    path.write_text(PERSONA + padding + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_PERSONA_FILE_BYTES
    assert [p.name for p in load_personas(path)] == ["desk"]


def test_ordinary_anchors_aliases_and_merge_keys_still_load(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        personas:
          - &base
            name: day
            default: true
            instructions: &rules Be brief and kind.
            greeting: Hello.
            transfer_targets: &targets
              operator: {number: &desk "+1 212 555 0110"}
            tools: {transfer_call: {}}
          - <<: *base
            name: night
            default: false
            numbers: [*desk]
            instructions: *rules
            transfer_targets: *targets
        """
    )
    book = load_personas(path)
    night = book.get("night")
    assert night is not None
    assert night.numbers == ("+12125550110",)
    assert night.instructions == "Be brief and kind."
    assert night.transfer_targets["operator"].number == "+12125550110"
    assert night.tools.enabled == ("transfer_call",)
    assert book.default.name == "day"


def test_a_file_with_thousands_of_errors_lists_the_first_hundred(write_yaml: WriteYaml) -> None:
    # Finding each error's line walks its mapping: 9 000 unknown keys took seconds.
    path = write_yaml(PERSONA + "".join(f"k{i}: 1\n" for i in range(9000)))
    started = time.monotonic()
    errors = load_errors(path)
    elapsed = time.monotonic() - started
    assert len(errors) == MAX_ERRORS_PER_FILE + 1 == 101
    assert errors[0].startswith(f"{path}:4: k0: unknown field 'k0'")
    assert errors[-1] == f"{path}: 8900 more errors not shown (at most 100 are listed per file)"
    assert elapsed < 5.0


def test_check_command_prints_the_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(PERSONA + "limits: &l {goodbye: *l}\n", encoding="utf-8")
    assert check_command(str(path)) == 1
    assert capsys.readouterr().err == (
        f"{path}:4: alias *l is inside its own anchor &l; recursive aliases are refused\n"
    )


def test_a_key_overriding_a_merged_one_is_not_a_duplicate_and_its_errors_point_at_it(
    write_yaml: WriteYaml,
) -> None:
    path = write_yaml(
        """
        personas:
          - &base {name: day, default: true, instructions: x, greeting: y, voice: coral}
          - <<: *base
            name: night
            default: false
            voice: ""
        """
    )
    assert load_errors(path) == [
        f"{path}:6: personas[1].voice: string should have at least 1 character (got '')"
    ]
