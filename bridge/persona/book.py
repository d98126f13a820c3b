"""The set of personas a server runs: the checks across them, `PersonaBook` (which persona
answers a called number) and `load_personas`, the one way files and folders are loaded."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from bridge.persona.errors import Loc, PersonaError
from bridge.persona.schema import DEFAULT_PERSONA, Persona
from bridge.persona.sections import normalize_number
from bridge.persona.source import Entry, load_file
from bridge.voices import unsupported_voice_message, voices_for


class _Identified(Protocol):
    """What the checks across personas read: a `Persona`, or an invalid one's `Identity`."""

    @property
    def name(self) -> str: ...
    @property
    def numbers(self) -> tuple[str, ...]: ...
    @property
    def default(self) -> bool: ...


def cross_check(
    personas: Sequence[_Identified],
    locate: Callable[[int, Loc, bool], str],
    origin: str,
    complete: bool = True,
) -> list[str]:
    """The rules no single persona can check: unique names, one persona per number, one
    default. `locate(index, loc, key_line)` says where a field is, as `file:line: `.

    `complete=False` says some persona could not be read at all (a syntax error, say): the
    missing one may be the default, so only its absence is not reported.
    """
    errors: list[str] = []
    names: dict[str, int] = {}
    numbers: dict[str, tuple[int, int]] = {}
    for i, p in enumerate(personas):
        if p.name in names:
            first = locate(names[p.name], ("name",), False)
            errors.append(
                f"{locate(i, ('name',), False)}name: persona {p.name!r} is already defined"
                f"{' at ' + first.rstrip(': ') if first else ''}"
            )
        else:
            names[p.name] = i
        for j, number in enumerate(p.numbers):
            if number in numbers:
                other, k = numbers[number]
                first = locate(other, ("numbers", k), False)
                errors.append(
                    f"{locate(i, ('numbers', j), False)}numbers[{j}]: {number} is already "
                    f"routed to persona {personas[other].name!r}"
                    f"{' at ' + first.rstrip(': ') if first else ''}"
                )
            else:
                numbers[number] = (i, j)
    defaults = [i for i, p in enumerate(personas) if p.default]
    if len(defaults) > 1:
        first = defaults[0]
        where = locate(first, ("default",), True).rstrip(": ")
        for i in defaults[1:]:
            errors.append(
                f"{locate(i, ('default',), True)}default: persona {personas[i].name!r} is a "
                f"second default; {personas[first].name!r}"
                f"{' at ' + where if where else ''} is already the default"
            )
    elif not defaults and len(personas) > 1 and complete:
        errors.append(
            f"{origin}: no default persona among {len(personas)} "
            f"({', '.join(p.name for p in personas)}): mark the one that answers unrouted "
            "numbers with `default: true`"
        )
    return errors


class PersonaBook:
    """The loaded personas, and which one answers a given called number."""

    def __init__(self, personas: Iterable[Persona]) -> None:
        """Check names, numbers and the default across `personas` (raises `PersonaError`)."""
        items = list(personas)
        if not items:
            raise PersonaError(["no personas"])
        errors = cross_check(items, lambda i, loc, key: "", "personas")
        if errors:
            raise PersonaError(errors)
        self._personas: tuple[Persona, ...] = tuple(items)
        self._by_name = {p.name: p for p in items}
        self._by_number = {n: p for p in items for n in p.numbers}
        defaults = [p for p in items if p.default]
        self.default: Persona = defaults[0] if defaults else items[0]

    @classmethod
    def builtin(cls) -> PersonaBook:
        """Only the built-in persona: what the bridge runs without a PERSONA_FILE."""
        return cls([DEFAULT_PERSONA])

    def for_number(self, to: str) -> Persona:
        """The persona routed to the called number `to` (Twilio's `To`), else the default."""
        return self._by_number.get(normalize_number(to or ""), self.default)

    def get(self, name: str) -> Persona | None:
        return self._by_name.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def warnings(self) -> list[str]:
        """Legal but probably unintended: personas no call can reach."""
        return [
            f"persona {p.name!r} has no numbers and is not the default: no call reaches it"
            for p in self._personas
            if not p.numbers and p is not self.default
        ]

    def __iter__(self) -> Iterator[Persona]:
        return iter(self._personas)

    def __len__(self) -> int:
        return len(self._personas)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        return f"PersonaBook({', '.join(self.names)}; default={self.default.name})"


def load_personas(path: str | Path, dialect: str | None = None) -> PersonaBook:
    """Load one YAML file (a persona, or a `personas:` list) or a directory of `*.yaml` and
    `*.yml` files (not recursive; hidden files skipped, which also skips the `..data` links
    of a Kubernetes ConfigMap mount). Raises `PersonaError` listing every problem found, in
    one pass: each file's errors, then those across personas (names, numbers, the default).

    With `dialect` ("ga" or "beta", the settings' protocol), what the provider would refuse
    in the call's `session.update` is an error too: a voice it does not have.

    The server's start-up and `voicebridge persona check` both load through here, so a file
    or folder that passes the check starts the server."""
    root = Path(path)
    origin = str(path)
    if root.is_dir():
        files = sorted(
            p
            for p in root.iterdir()
            if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
        )
        if not files:
            raise PersonaError([f"{origin}: no persona files (*.yaml, *.yml) in this directory"])
    elif root.exists():
        files = [root]
    else:
        raise PersonaError([f"{origin}: no such file or directory"])

    entries: list[Entry] = []
    errors: list[str] = []
    complete = True
    for file in files:
        file_entries, file_errors = load_file(file, str(file))
        entries += file_entries
        errors += file_errors
        complete = complete and bool(file_entries)

    known = [e for e in entries if e.identity is not None]
    complete = complete and len(known) == len(entries)

    def locate(i: int, loc: Loc, key_line: bool) -> str:
        return known[i].source.locate(loc, key_line) + ": "

    identities = [e.identity for e in known if e.identity is not None]
    errors += cross_check(identities, locate, origin, complete)
    if dialect is not None:
        errors += _provider_problems(entries, dialect)
    if errors:
        raise PersonaError(errors)
    return PersonaBook(e.persona for e in entries if e.persona is not None)


def _provider_problems(entries: list[Entry], dialect: str) -> list[str]:
    """What the provider's `session.update` would refuse, so a call never meets it silent."""
    problems = []
    for entry in entries:
        persona = entry.persona
        if persona is None:
            continue
        if persona.voice not in voices_for(dialect):
            where = entry.source.locate(("voice",))
            problems.append(f"{where}: voice: {unsupported_voice_message(persona.voice, dialect)}")
        if dialect != "ga":
            # The preview (beta) dialect refuses these in session.update.
            if persona.turn_detection.idle_timeout_ms is not None:
                where = entry.source.locate(("turn_detection", "idle_timeout_ms"))
                problems.append(
                    f"{where}: turn_detection.idle_timeout_ms: not in the preview (beta) dialect "
                    "the provider speaks; remove it (the bridge's IDLE_TIMEOUT_SECONDS applies)"
                )
            if persona.noise_reduction is not None:
                where = entry.source.locate(("noise_reduction",))
                problems.append(
                    f"{where}: noise_reduction: not in the preview (beta) dialect the provider "
                    "speaks; remove it"
                )
    return problems
