"""docs/deploy.md's persona ConfigMap: the files it lists pass `persona check` as one folder,
as the pods load them.

Each of the example's files passed the check on its own while, mounted together with no
default among them, they failed every pod's start-up (a crash loop).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from bridge.persona import check_command
from tests.persona._support import EXAMPLES, REPO

DEPLOY = REPO / "docs" / "deploy.md"


def _personas_section() -> str:
    text = DEPLOY.read_text(encoding="utf-8")
    start = text.index("### 3. Personas")
    return text[start : text.index("\n### ", start + 1)]


def _configmap_files() -> list[str]:
    """The `files` of the `voicebridge-personas` generator in the section's YAML snippet."""
    (snippet,) = re.findall(r"```yaml\n(.*?)```", _personas_section(), re.S)
    generators = yaml.safe_load(snippet)["configMapGenerator"]
    (personas,) = [g for g in generators if g["name"] == "voicebridge-personas"]
    files: list[str] = personas["files"]
    return files


def _folder(tmp_path: Path, files: list[str]) -> Path:
    # The doc's paths are relative to the overlay; its files are copies of the shipped ones.
    folder = tmp_path / "personas"
    folder.mkdir()
    for file in files:
        shutil.copy(EXAMPLES / Path(file).name, folder / Path(file).name)
    return folder


def test_the_documented_personas_pass_the_check_as_one_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _configmap_files()
    assert files == [
        "personas/default.yaml",
        "personas/receptionist.yaml",
        "personas/support.yaml",
    ]
    assert check_command(str(_folder(tmp_path, files))) == 0
    out, err = capsys.readouterr()
    assert out == (
        "OK: 3 persona(s): default (default); receptionist (+12125550100, +12125550101); "
        "support (+14155550142)\n"
    )
    assert err == ""


def test_the_former_example_without_a_default_fails_the_folder_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path, ["personas/receptionist.yaml", "personas/support.yaml"])
    for file in folder.iterdir():
        assert check_command(str(file)) == 0  # what "check each file" said
    capsys.readouterr()
    assert check_command(str(folder)) == 1
    assert capsys.readouterr().err == (
        f"{folder}: no default persona among 2 (receptionist, support): mark the one that "
        "answers unrouted numbers with `default: true`\n"
    )


def test_the_doc_says_to_check_the_folder_not_each_file() -> None:
    commands = re.findall(r"`voicebridge persona check ([^`]+)`", _personas_section())
    assert commands == ["infra/k8s/overlays/production/personas/"]
