"""Where persona errors are: the YAML node tree of a file, the line of every field, and
pydantic's validation errors turned into `file:line: field.path: reason` lines with a
"did you mean" where a name is misspelt.

`load_file` reads one file (within the bounds of `yaml_reader`) and validates every persona
in it, reporting all of its problems at once: field errors, references to transfer targets
that do not exist, duplicate keys.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from bridge.persona import yaml_reader
from bridge.persona.errors import Loc, suggest
from bridge.persona.schema import Identity, Persona, raw_references

MAX_ERRORS_PER_FILE = 100
"""The most errors listed for one file. Finding a field's line walks its mapping, so listing
each of a file's 20 000 unknown keys would take seconds; nobody reads past the first screen."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where one persona came from, to put file and line on errors found after validation:
    the file, its node tree, and the persona's path in it (`("personas", 2)` in a list)."""

    file: str
    root: yaml.Node
    prefix: Loc

    def locate(self, loc: Loc, key_line: bool = False) -> str:
        """`file:line` of the field at `loc` of this persona (of its key, with `key_line`)."""
        return f"{self.file}:{_line(self.root, self.prefix + loc, key_line)}"


def _walk(node: yaml.Node, loc: Loc) -> tuple[yaml.Node, yaml.Node | None, int]:
    """Follow `loc` into the node tree as far as it goes: (deepest node, its key node, how
    many parts of `loc` were matched)."""
    key_node: yaml.Node | None = None
    for depth, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            # The last of equal keys is the one loaded (and, after a `<<` merge, the mapping's
            # own key comes after the merged ones).
            for k, v in reversed(node.value):
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    key_node, node = k, v
                    break
            else:
                return node, key_node, depth
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return node, key_node, depth
            key_node, node = None, node.value[part]
        else:
            return node, key_node, depth
    return node, key_node, len(loc)


def _line(root: yaml.Node, loc: Loc, key_line: bool = False, offset: int | None = None) -> int:
    """The 1-based line of the field at `loc`; of its key when the key is what is wrong."""
    node, key_node, matched = _walk(root, loc)
    if matched == len(loc) and key_line and key_node is not None:
        return key_node.start_mark.line + 1
    if (
        matched == len(loc)
        and offset is not None
        and isinstance(node, yaml.ScalarNode)
        and isinstance(node.value, str)
    ):
        before = node.value[:offset].count("\n")
        if node.style == "|":  # content starts on the line after the `|`
            return node.start_mark.line + 2 + before
        if before == 0:
            return node.start_mark.line + 1
    return node.start_mark.line + 1


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out or "(persona)"


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The persona model class that holds the field at `loc`, to list its valid keys."""
    tp: Any = Persona
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is not None:
                tp = field.annotation
            elif "__pydantic_extra__" in getattr(tp, "__annotations__", {}):
                # A model with named entries of one type (the persona's own tools).
                tp = typing.get_args(typing.get_type_hints(tp)["__pydantic_extra__"])[1]
            else:
                return None
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin in (tuple, list):
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool | date) or value is None


def _reason(err: Mapping[str, Any], loc: Loc) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "persona":
        return str(ctx["reason"])
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        key = str(loc[-1])
        label = "field"
        if model is not None:
            label = getattr(model, "_key_kind", "field")
            fields = list(model.model_fields)
            hint = suggest(key, fields)
            if hint:
                return f"unknown {label} {key!r}; did you mean {hint}?"
            return f"unknown {label} {key!r}; allowed: {', '.join(fields)}"
        return f"unknown {label} {key!r}"
    if kind == "missing":
        return "required field is missing"
    if kind in ("model_type", "dict_type"):
        # pydantic says "instance of Tools"; the operator wrote YAML, not Python.
        value = err.get("input")
        got = {list: "a list", str: "text", type(None): "nothing"}.get(type(value), "a value")
        shown = f" {value!r}" if _scalar(value) and value is not None else ""
        return f"expected a mapping (`key: value` lines), got {got}{shown}"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    value = err.get("input")
    if _scalar(value):
        msg += f" (got {value!r})"
    if kind == "literal_error" and isinstance(value, str):
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = suggest(value, expected)
        if hint:
            msg += f"; did you mean {hint}?"
    return msg


def _validation_messages(
    exc: ValidationError, source: Source
) -> tuple[list[tuple[int, str]], set[Loc]]:
    """`(line, message)` of each error (the first `MAX_ERRORS_PER_FILE`), and the full paths
    they are about."""
    out = []
    seen: set[Loc] = set()
    for err in exc.errors()[:MAX_ERRORS_PER_FILE]:
        loc: Loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == "persona":
            loc += tuple(ctx.get("path", ()))
        full = source.prefix + loc
        line = _line(
            source.root,
            full,
            key_line=err["type"] in ("extra_forbidden", "persona") and "offset" not in ctx,
            offset=ctx.get("offset"),
        )
        out.append((line, f"{source.file}:{line}: {_dotted(full)}: {_reason(err, loc)}"))
        seen.add(full)
    return out, seen


@dataclass(frozen=True, slots=True)
class Entry:
    """One persona found in a file. `persona` is None when it is invalid (its errors are in
    the file's list); `identity` is its name, numbers and default even then, when those are
    valid, so the checks across personas can still run; None when they are not."""

    source: Source
    persona: Persona | None
    identity: Persona | Identity | None


def load_file(
    path: Path, file: str, env: Mapping[str, str] | None = None
) -> tuple[list[Entry], list[str]]:
    """Parse and validate one YAML file: `(entries, errors)`, with every error found, sorted
    by line. A file that cannot be parsed at all has no entries. `env` is where `${VAR}`s in
    headers are looked up (default: the process environment)."""
    context = {"env": os.environ if env is None else env}
    try:
        doc = yaml_reader.parse(yaml_reader.read_text(path))
    except yaml_reader.YamlRefused as exc:
        line = f":{exc.line}" if exc.line is not None else ""
        return [], [f"{file}{line}: {exc.reason}"]
    except UnicodeDecodeError:
        return [], [f"{file}: not UTF-8 text"]
    except OSError as exc:
        return [], [f"{file}: {exc.strerror or exc}"]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        return [], [f"{file}{line}: YAML syntax: {what}"]
    if doc is None:
        return [], [f"{file}: empty file; a persona needs at least name, instructions, greeting"]
    root, data = doc.root, doc.data

    entries: list[tuple[object, Loc]]
    if isinstance(data, dict) and "personas" in data:
        others = [str(k) for k in data if k != "personas"]
        if others:
            line = _line(root, (others[0],), key_line=True)
            return [], [
                f"{file}:{line}: {others[0]}: a file with a `personas:` list holds nothing "
                "else; put each persona's fields inside its list item"
            ]
        items = data["personas"]
        if not isinstance(items, list) or not items:
            line = _line(root, ("personas",))
            return [], [f"{file}:{line}: personas: expected a non-empty list of personas"]
        entries = [(item, ("personas", i)) for i, item in enumerate(items)]
    else:
        entries = [(data, ())]

    loaded: list[Entry] = []
    errors = [
        (d.line, f"{file}:{d.line}: {_dotted(d.loc)}: duplicate key (first at line {d.first_line})")
        for d in doc.duplicates
    ]
    total = len(errors)
    for item, prefix in entries:
        source = Source(file, root, prefix)
        if not isinstance(item, dict):
            line = _line(root, prefix)
            where = _dotted(prefix) if prefix else "(persona)"
            errors.append(
                (
                    line,
                    f"{file}:{line}: {where}: expected a mapping of persona fields "
                    f"(name, instructions, greeting, …), got {type(item).__name__}",
                )
            )
            total += 1
            loaded.append(Entry(source, None, None))
            continue
        try:
            persona = Persona.model_validate(item, context=context)
        except ValidationError as exc:
            messages = _persona_messages(exc, item, source)
            errors += messages
            total += len(messages) + max(0, exc.error_count() - MAX_ERRORS_PER_FILE)
            loaded.append(Entry(source, None, _identity(item)))
        else:
            loaded.append(Entry(source, persona, persona))
    errors.sort(key=lambda e: e[0])
    shown = [m for _, m in errors[:MAX_ERRORS_PER_FILE]]
    if total > len(shown):
        shown.append(
            f"{file}: {total - len(shown)} more errors not shown "
            f"(at most {MAX_ERRORS_PER_FILE} are listed per file)"
        )
    return loaded, shown


def _persona_messages(
    exc: ValidationError, item: Mapping[object, object], source: Source
) -> list[tuple[int, str]]:
    """The field errors of an invalid persona and, in the same list, its unresolved references
    (which pydantic checks only once every field is valid)."""
    out, seen = _validation_messages(exc, source)
    for loc, reason in raw_references(item):
        full = source.prefix + loc
        if full in seen:
            continue
        line = _line(source.root, full, key_line=True)
        out.append((line, f"{source.file}:{line}: {_dotted(full)}: {reason}"))
    return out


def _identity(item: Mapping[object, object]) -> Identity | None:
    try:
        return Identity.model_validate(item)
    except ValidationError:
        return None
