"""`voicebridge persona check FILE|DIR`: a summary and 0, or every error on stderr and 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import cli
from bridge.persona import PersonaBook, check_command
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


def test_field_and_reference_errors_come_out_in_one_run(
    write_yaml: WriteYaml, capsys: pytest.CaptureFixture[str]
) -> None:
    # pydantic checks references only once every field is valid: before, the two targets
    # were reported only after speed and language had been fixed.
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        speed: 3
        language: english
        transfer_targets:
          operator: {number: "+1 212 555 0110"}
        dtmf:
          menu:
            0: {action: transfer, target: operater}
        fallback:
          transfer_to: billing
        """
    )
    assert check_command(str(path)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}:4: speed: input should be less than or equal to 1.5 (got 3)",
        f"{path}:5: language: 'english' is not an ISO-639-1 language code like 'en' or 'de'",
        f"{path}:10: dtmf.menu[\"0\"].target: unknown transfer target 'operater' "
        "(transfer_targets: operator)",
        f"{path}:12: fallback.transfer_to: unknown transfer target 'billing' "
        "(transfer_targets: operator)",
    ]


def test_several_bad_references_in_an_otherwise_valid_persona_are_each_listed_once(
    write_yaml: WriteYaml, capsys: pytest.CaptureFixture[str]
) -> None:
    # Here pydantic's own check runs too (every field is valid) and finds the first of them.
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        dtmf:
          menu:
            1: {action: transfer, target: sales}
            2: {action: transfer, target: billing}
        fallback:
          transfer_to: operator
        """
    )
    assert check_command(str(path)) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:6: dtmf.menu[\"1\"].target: unknown transfer target 'sales' "
        "(transfer_targets: none defined)",
        f"{path}:7: dtmf.menu[\"2\"].target: unknown transfer target 'billing' "
        "(transfer_targets: none defined)",
        f"{path}:9: fallback.transfer_to: unknown transfer target 'operator' "
        "(transfer_targets: none defined)",
    ]


def test_transfer_call_without_targets_is_reported_with_a_field_error(
    write_yaml: WriteYaml, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Be brief.
        greeting: Hello.
        voise: coral
        tools:
          transfer_call:
        """
    )
    assert check_command(str(path)) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:4: voise: unknown field 'voise'; did you mean 'voice'?",
        f"{path}:6: tools.transfer_call: transfer_call needs at least one entry in "
        "transfer_targets",
    ]


def test_a_folder_reports_file_errors_and_errors_across_files_together(
    write_yaml: WriteYaml, capsys: pytest.CaptureFixture[str]
) -> None:
    # b.yaml is invalid (speed), yet its name, numbers and default still take part in the
    # checks across the folder: its number is a's, and both say they are the default.
    a = write_yaml(
        'name: a\ndefault: true\nnumbers: ["+12125550100"]\ninstructions: x\ngreeting: y\n',
        "dir/a.yaml",
    )
    b = write_yaml(
        'name: b\ndefault: true\nnumbers: ["+1 212 555 0100"]\ninstructions: x\ngreeting: y\n'
        "speed: 0\n",
        "dir/b.yaml",
    )
    assert check_command(str(a.parent)) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{b}:6: speed: input should be greater than or equal to 0.25 (got 0)",
        f"{b}:3: numbers[0]: +12125550100 is already routed to persona 'a' at {a}:3",
        f"{b}:2: default: persona 'b' is a second default; 'a' at {a}:2 is already the default",
    ]


def test_a_file_that_cannot_be_read_does_not_make_up_a_missing_default(
    write_yaml: WriteYaml, capsys: pytest.CaptureFixture[str]
) -> None:
    # The broken file may hold the default: only its syntax error is reported.
    a = write_yaml("name: a\ninstructions: x\ngreeting: y\n", "dir/a.yaml")
    write_yaml("name: b\ninstructions: x\ngreeting: y\n", "dir/b.yaml")
    broken = write_yaml("name: [c\n", "dir/c.yaml")
    assert check_command(str(a.parent)) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"{broken}:2: YAML syntax: ")


@pytest.mark.parametrize(
    "files",
    [
        {"a.yaml": "name: a\ninstructions: x\ngreeting: y\n"},
        {"a.yaml": "name: a\ninstructions: x\ngreeting: y\n", "b.yml": "name: b\n"},
        {
            "a.yaml": "name: a\ninstructions: x\ngreeting: y\n",
            "b.yaml": "name: b\ninstructions: x\ngreeting: y\n",
        },
        {
            "a.yaml": "name: a\ndefault: true\ninstructions: x\ngreeting: y\n",
            "b.yaml": "name: b\ninstructions: x\ngreeting: y\nnumbers: 12125550100\n",
        },
        {
            "a.yaml": "name: a\ndefault: true\ninstructions: x\ngreeting: y\n",
            "b.yaml": "name: b\ninstructions: x\ngreeting: y\n",
        },
    ],
    ids=["one", "one-invalid", "no-default", "bad-number", "ok-with-orphan"],
)
def test_the_check_of_a_folder_fails_exactly_when_start_up_does(
    tmp_path: Path,
    files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Start-up is `voicebridge serve` with PERSONA_FILE at the folder: it exits 2 with the
    # check's lines under "invalid persona", or goes on to build the app (stopped there).
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    code = check_command(str(tmp_path))
    checked = capsys.readouterr()

    class Started(Exception):
        pass

    def create_app(settings: object, book: PersonaBook) -> None:
        raise Started(list(book.names))

    monkeypatch.setattr("bridge.app.create_app", create_app)
    monkeypatch.setattr("bridge.cli.configure_logging", lambda *args: None)
    try:
        served = cli.main(["serve", "--persona", str(tmp_path)])
    except Started as started:
        assert code == 0
        assert checked.out.startswith(f"OK: {len(started.args[0])} persona(s): ")
    else:
        assert (code, served) == (1, 2)
        assert capsys.readouterr().err == f"voicebridge: invalid persona:\n{checked.err}"


def test_a_voice_the_provider_does_not_have_is_refused_with_its_line(
    write_yaml: WriteYaml, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service answers an unknown voice with `invalid_value` and no `session.updated`;
    the check says so first, for the dialect the settings speak (the preview has no marin)."""
    path = write_yaml(
        """
        name: desk
        instructions: Answer.
        greeting: Hello.
        voice: marin
        """
    )
    assert check_command(str(path)) == 0  # GA (OpenAI, Azure GA) has marin
    capsys.readouterr()
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-test-key-0123456789")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt-realtime")
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2025-04-01-preview")
    assert check_command(str(path)) == 1
    _, err = capsys.readouterr()
    assert err.startswith(f"{path}:4: voice: Invalid value: 'marin'. Supported values are: 'alloy'")


def test_fields_the_preview_dialect_lacks_are_refused_with_their_lines(
    write_yaml: WriteYaml, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml(
        """
        name: desk
        instructions: Answer.
        greeting: Hello.
        noise_reduction: near_field
        turn_detection:
          idle_timeout_ms: 8000
        """
    )
    assert check_command(str(path)) == 0  # GA takes both
    capsys.readouterr()
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-test-key-0123456789")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt-realtime")
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2025-04-01-preview")
    assert check_command(str(path)) == 1
    _, err = capsys.readouterr()
    assert f"{path}:6: turn_detection.idle_timeout_ms: not in the preview (beta) dialect" in err
    assert f"{path}:4: noise_reduction: not in the preview (beta) dialect" in err
