"""Reading persona YAML: within bounds (size, nesting, alias expansion), with persona scalars,
and with the duplicate keys PyYAML would silently drop.

A persona file is configuration, but it may come from a colleague's pull request or a shared
ConfigMap, and YAML lets 473 bytes of anchors and aliases ("billion laughs") stand for 10⁹
nodes: the parser keeps them shared and fast, but validating them walks every copy, and kept
`persona check` and the server's start-up at 100 % CPU for over a minute. So the composer
counts, for every node, how many nodes it stands for once its aliases are expanded, and refuses
the file as soon as one node stands for more than `MAX_YAML_NODES`; everything after it
(construction, validation, positions) then walks at most that many.

The loader also drops YAML 1.1's traps: `no`/`on`/`off` stay strings (`language: no` is
Norwegian), and `+15551234567` stays a string, not an integer. PyYAML keeps the last of two
equal keys without a word; `parse` lists them, since an operator editing a long file deserves
to hear that the first one is ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

MAX_PERSONA_FILE_BYTES = 256 * 1024
"""The largest persona file read; the documented examples are under 10 KiB."""

MAX_YAML_NODES = 20_000
"""The most nodes one document may stand for with its aliases expanded (a documented persona
is about 200; a `personas:` list of 50 of them, 10 000)."""

MAX_YAML_DEPTH = 32
"""The deepest nesting of mappings and lists (a persona's deepest field is 6 levels down);
the composer recurses per level, so this also keeps it far from Python's recursion limit."""


class YamlRefused(Exception):
    """A persona file refused for its size or shape, not its content: `reason`, and the
    1-based `line` where the bound was crossed when there is one."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def read_text(path: Path) -> str:
    """The UTF-8 text of `path`, read only up to `MAX_PERSONA_FILE_BYTES` (a larger file is
    refused without reading the rest). Raises `YamlRefused`, `OSError`, `UnicodeDecodeError`."""
    with path.open("rb") as f:
        data = f.read(MAX_PERSONA_FILE_BYTES + 1)
        if len(data) > MAX_PERSONA_FILE_BYTES:
            size = os.fstat(f.fileno()).st_size
            got = f"{size} bytes" if size > MAX_PERSONA_FILE_BYTES else "more"
            raise YamlRefused(
                f"file too large ({got}); a persona file may hold at most "
                f"{MAX_PERSONA_FILE_BYTES} bytes ({MAX_PERSONA_FILE_BYTES // 1024} KiB)"
            )
    return data.decode("utf-8")


class _Loader(yaml.SafeLoader):
    """SafeLoader with persona scalars (see the module's docstring) and the node bounds."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        # id(node) -> how many nodes it stands for, aliases expanded; set once it is complete.
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise YamlRefused(
                    f"alias *{event.anchor} is inside its own anchor &{event.anchor}; "
                    "recursive aliases are refused",
                    event.start_mark.line + 1,
                )
            return super().compose_node(parent, index)
        start = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise YamlRefused(
                f"nested deeper than {MAX_YAML_DEPTH} levels; refused (a persona needs 6)",
                start.line + 1,
            )
        node: yaml.Node = super().compose_node(parent, index)
        self._depth -= 1
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._sizes[id(item)] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        if size > MAX_YAML_NODES:
            raise YamlRefused(
                f"more than {MAX_YAML_NODES} YAML nodes once aliases are expanded; refused "
                "(a persona has a few hundred: an alias bomb?)",
                start.line + 1,
            )
        self._sizes[id(node)] = size
        return node


_BOOL_TAG = "tag:yaml.org,2002:bool"
_NUMERIC_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag != _BOOL_TAG and not (first == "+" and tag in _NUMERIC_TAGS)
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A key written twice in one mapping: the one ignored is at `first_line`."""

    line: int
    first_line: int
    loc: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed file: the node tree (for line numbers), its Python value, its duplicate keys."""

    root: yaml.Node
    data: object
    duplicates: tuple[Duplicate, ...]


def parse(text: str) -> Document | None:
    """The single document in `text`, or None when there is none. Raises `YamlRefused` past a
    bound and `yaml.MarkedYAMLError` on a syntax error."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        # Before construction, which merges `<<` keys into the mapping nodes themselves.
        duplicates = tuple(_duplicates(root, ()))
        data = loader.construct_document(root)
    finally:
        loader.dispose()
    return Document(root, data, duplicates)


def _duplicates(node: yaml.Node, loc: tuple[str | int, ...]) -> list[Duplicate]:
    out: list[Duplicate] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is None or key == "<<":
                continue
            line = k.start_mark.line + 1
            if key in seen:
                out.append(Duplicate(line, seen[key], (*loc, key)))
            else:
                seen[key] = line
            out += _duplicates(v, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _duplicates(item, (*loc, i))
    return out
