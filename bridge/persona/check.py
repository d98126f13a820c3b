"""`voicebridge persona check FILE|DIR`: what the server would say of these persona files at
start-up, before they are deployed."""

from __future__ import annotations

import sys

from bridge.persona.book import PersonaBook, load_personas
from bridge.persona.errors import PersonaError


def describe(book: PersonaBook) -> str:
    """One line naming each persona with its numbers, e.g. for `persona check`."""
    parts = []
    for p in book:
        tags = [*p.numbers, *(["default"] if p is book.default else [])]
        parts.append(f"{p.name} ({', '.join(tags)})" if tags else p.name)
    return f"{len(book)} persona(s): {'; '.join(parts)}"


def check_command(path: str) -> int:
    """0 and a summary when `path` (a file, or a folder checked as one set, as `PERSONA_FILE`
    is loaded) is valid; else 1 and every error, one per line on stderr. Warnings (a persona
    no call reaches) go to stderr and do not fail the check, as they do not fail start-up."""
    dialect = _dialect()
    try:
        book = load_personas(path, dialect)
    except PersonaError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    for warning in book.warnings():
        print(f"{path}: warning: {warning}", file=sys.stderr)
    print(f"OK: {describe(book)}")
    return 0


def _dialect() -> str:
    """The protocol the configured provider speaks (the environment and `.env`, as `serve`
    reads them), so the check refuses what that provider would; GA when settings are unset
    or invalid (the server reports those itself)."""
    from bridge.settings import SettingsError, load_settings

    try:
        return load_settings().dialect
    except SettingsError:
        return "ga"
