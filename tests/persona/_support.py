"""Shared by the persona tests: where the shipped examples are, and how to read load errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.persona import PersonaError, load_personas

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "personas"


def load_errors(path: Path) -> list[str]:
    """The error lines of loading `path`, which must fail."""
    with pytest.raises(PersonaError) as info:
        load_personas(path)
    return list(info.value.errors)


WriteYaml = Callable[..., Path]
