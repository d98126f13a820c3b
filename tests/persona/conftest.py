"""Persona tests write YAML to real files, so errors carry real file names and lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.persona._support import WriteYaml


@pytest.fixture
def write_yaml(tmp_path: Path) -> WriteYaml:
    """`write_yaml(text, name="persona.yaml")`: dedent `text` into a file and return its path.
    Line 1 of the file is the first line after the opening quotes."""

    def write(text: str, name: str = "persona.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
