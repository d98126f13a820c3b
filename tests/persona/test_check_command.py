"""`voicebridge persona check FILE`: a summary and 0, or the errors on stderr and 1."""

from __future__ import annotations

import pytest

from bridge.persona import check_command
from tests.persona._support import EXAMPLES, WriteYaml


def test_valid_folder_prints_each_persona_with_its_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert check_command(str(EXAMPLES)) == 0
    out, err = capsys.readouterr()
    assert out == (
        "OK: 3 persona(s): default (default); receptionist (+12125550100, +12125550101); "
        "support (+14155550142)\n"
    )
    assert err == ""


@pytest.mark.parametrize("file", ["default.yaml", "receptionist.yaml", "support.yaml"])
def test_each_shipped_example_passes_on_its_own(file: str) -> None:
    assert check_command(str(EXAMPLES / file)) == 0


def test_invalid_file_prints_every_error_to_stderr_and_returns_1(
    write_yaml: WriteYaml, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Hello {customer}.
        greeting: Hello.
        voise: coral
        """
    )
    assert check_command(str(path)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:2: instructions: unknown placeholder {{customer}}")
    assert lines[1] == f"{path}:4: voise: unknown field 'voise'; did you mean 'voice'?"


def test_unreachable_persona_is_a_warning_not_a_failure(
    write_yaml: WriteYaml, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_yaml(
        """
        personas:
          - {name: main, default: true, instructions: x, greeting: y}
          - {name: orphan, instructions: x, greeting: y}
        """
    )
    assert check_command(str(path)) == 0
    out, err = capsys.readouterr()
    assert out == "OK: 2 persona(s): main (default); orphan\n"
    assert err == (
        f"{path}: warning: persona 'orphan' has no numbers and is not the default: "
        "no call reaches it\n"
    )


def test_missing_file_returns_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_command("no/such/persona.yaml") == 1
    assert capsys.readouterr().err == "no/such/persona.yaml: no such file or directory\n"
