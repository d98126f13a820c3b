"""The base of every persona model, in a module of its own so every section module can
build on it without importing the others."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from bridge.persona.errors import field_error

PROBLEM = "__problem__"
"""A parent that finds an entry wrong puts `{PROBLEM: reason}` in its place: the entry's
model then reports that reason at the entry's line, and the parent's other entries are still
checked (a validator that raises stops at the first problem)."""


class Section(BaseModel):
    """Base of every persona model: unknown keys are errors, and values never change after
    loading, since one persona serves many concurrent calls."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # How unknown keys of this section are named in errors ("unknown tool 'x'").
    _key_kind: ClassVar[str] = "field"

    @model_validator(mode="before")
    @classmethod
    def _marked_problem(cls, data: object) -> object:
        if isinstance(data, dict) and PROBLEM in data:
            raise field_error(str(data[PROBLEM]))
        return data
