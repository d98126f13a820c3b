"""How persona problems are raised and worded, shared by every persona module.

Errors reach the operator as `file:line: field.path: reason`; the models raise a reason with
the path below them (`field_error`), the source module adds file and line, and `suggest`
supplies the "did you mean" of a misspelt name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic_core import PydanticCustomError

Loc = tuple[str | int, ...]
"""A field's path inside a persona, as pydantic reports it: `("dtmf", "menu", "0", "target")`."""


class PersonaError(ValueError):
    """One or more problems in persona files, each a line `file:line: field.path: reason`.

    The server refuses to start with the same message `voicebridge persona check` prints.
    """

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("\n".join(self.errors))


def field_error(reason: str, *path: str | int, offset: int | None = None) -> PydanticCustomError:
    """A validation error that points below the model that raised it.

    Cross-field checks run on the parent model, but the operator needs the line of the field
    at fault; `path` travels in the error's context and the formatter appends it to `loc`.
    `offset` is a character offset inside a text, for the line of a multi-line template.
    """
    ctx: dict[str, Any] = {"reason": reason, "path": path}
    if offset is not None:
        ctx["offset"] = offset
    return PydanticCustomError("persona", "{reason}", ctx)


def suggest(word: str, choices: Iterable[str], fmt: str = "{!r}") -> str | None:
    """`'monday'`, or `'monday' or 'sunday'` when several are equally close; None if none is."""
    options = sorted(set(choices))
    ratios = []
    for choice in options:
        matcher = difflib.SequenceMatcher(None, word, choice)
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
            ratios.append((matcher.ratio(), choice))
    best = max((r for r, _ in ratios), default=0.0)
    if best < 0.6:
        return None
    return " or ".join([fmt.format(c) for r, c in ratios if r == best][:3])
