"""Persona texts with placeholders: `{caller_number}`, `{business_name}`, `{today}`, `{now}`
and `{persona_name}`; `{{` and `}}` are literal braces.

Templates are parsed when the persona loads, so an unknown placeholder is a load-time error
with the line it is on, never a surprise in the middle of a call.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator

from bridge.persona.errors import field_error, suggest

PLACEHOLDERS: tuple[str, ...] = (
    "business_name",
    "caller_number",
    "now",
    "persona_name",
    "today",
)
"""The names a persona text may use in braces."""

_ALLOWED = ", ".join("{" + p + "}" for p in PLACEHOLDERS)


class TemplateError(ValueError):
    """A malformed template; `offset` is where in the text, for the line number."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.offset = offset


@functools.lru_cache(maxsize=512)
def parse_template(text: str) -> tuple[tuple[str, int] | str, ...]:
    """Split a template into literal strings and `(placeholder, offset)` pairs.

    Hand-written rather than `string.Formatter` so errors carry the offset, which becomes a
    line number inside a multi-line YAML block. Raises `TemplateError`.
    """
    parts: list[tuple[str, int] | str] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{":
            if text.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            end = text.find("}", i + 1)
            if end < 0:
                raise TemplateError("unclosed '{'; write {{ for a literal brace", i)
            name = text[i + 1 : end]
            if not name:
                raise TemplateError(
                    f"empty placeholder {{}}; use one of {_ALLOWED}, or {{{{ }}}} for braces", i
                )
            if name not in PLACEHOLDERS:
                hint = suggest(name.strip(), PLACEHOLDERS, "{{{}}}")
                did = f"did you mean {hint}? " if hint else ""
                raise TemplateError(
                    f"unknown placeholder {{{name}}}; {did}allowed: {_ALLOWED} "
                    "(write {{ and }} for literal braces)",
                    i,
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((name, i))
            i = end + 1
            continue
        if c == "}":
            if text.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise TemplateError("single '}'; write }} for a literal brace", i)
        literal.append(c)
        i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def check_template(text: str) -> str:
    """The pydantic validator of `Template`: the text itself, or a located field error."""
    try:
        parse_template(text)
    except TemplateError as exc:
        raise field_error(str(exc), offset=exc.offset) from None
    return text


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Fill a checked template; `values` holds every name in `PLACEHOLDERS`."""
    return "".join(p if isinstance(p, str) else values[p[0]] for p in parse_template(text))


Template = Annotated[str, AfterValidator(check_template)]
"""A persona text with placeholders, checked when the persona is loaded."""
