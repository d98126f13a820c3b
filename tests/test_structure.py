"""The package's shape: no import cycle inside `bridge/`, and no module too long to read.

Import cycles. The graph is built from the source (the AST of every module), not by importing
it, so a cycle is found whether or not it happens to work at run time. Every import counts:

- module-level imports, including those under `if TYPE_CHECKING:`. Such an import hides a
  cycle from the interpreter, not from the reader: two modules that need each other's names
  are one concern split in two (or share types that belong in a third module), and neither
  can be understood, tested or changed alone. The fix is to move what both need, not to hide
  the import;
- imports inside functions too: a lazy import that closes a loop is the usual way a cycle is
  made to work, and the same coupling. A lazy import kept for start-up cost (the CLI's) is
  not a cycle and is not reported.

`import a.b.c` from outside package `a.b` also runs `a/b/__init__.py`, so it counts as an
edge to `a.b` as well; from inside `a.b` it does not (the package is already importing).
A package's `__init__` that imports its own submodules is therefore not a cycle, but a module
that imports a package whose `__init__` imports something that imports that module is.

Module size. A module over 600 lines is usually more than one concern; one that is not (a
table, a protocol's whole vocabulary) says why in its docstring, on a line starting `Size:`.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator, Mapping
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "bridge"
MAX_LINES = 600


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of `package` under `root`, by dotted name (`a/b/__init__.py` is `a.b`)."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Dotted names this module imports, anywhere in its body; `from a import b` yields both
    `a` and `a.b` (the caller keeps `a.b` only if it is a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            for alias in node.names:
                yield f"{target}.{alias.name}"


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of `package` that importing it runs (see the module docstring)."""
    files = module_files(root, package)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        if path.name == "__init__.py":
            own_packages.add(module)
        edges: set[str] = set()
        for name in _imported_names(tree, module, path.name == "__init__.py"):
            if name not in files:
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                step = ".".join(parts[:i])
                if step in files and step not in own_packages and step != module:
                    edges.add(step)
        graph[module] = edges
    return graph


def _components(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), iterative: the groups that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work.append((start, iter(sorted(graph[start]))))
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                out.append(sorted(group))
    return out


def _shortest_cycle(graph: Mapping[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest chain start → … → start inside one component (breadth first)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & within):
            if child == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [start, *reversed(chain[:-1]), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is in a component but on no cycle")


def import_cycles(graph: Mapping[str, set[str]]) -> list[str]:
    """Each cycle, as a chain `a → b → a`: per group of modules that import each other, the
    shortest cycle through each member, each cycle once."""
    chains: list[str] = []
    for group in _components(graph):
        members = set(group)
        if len(group) == 1 and group[0] not in graph[group[0]]:
            continue
        seen: set[frozenset[str]] = set()
        for member in group:
            cycle = _shortest_cycle(graph, member, members)
            key = frozenset(pairwise(cycle))
            if key not in seen:
                seen.add(key)
                chains.append(" → ".join(cycle))
    return chains


def oversized_modules(root: Path, package: str, max_lines: int = MAX_LINES) -> list[str]:
    """Modules over `max_lines` lines whose docstring has no line starting `Size:`."""
    offenders = []
    for module, path in module_files(root, package).items():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines <= max_lines:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.strip().startswith("Size:") for line in doc.splitlines()):
            offenders.append(f"{module} ({lines} lines)")
    return offenders


# --- the checks -------------------------------------------------------------------------------


def test_no_import_cycle_inside_bridge() -> None:
    cycles = import_cycles(import_graph(ROOT, PACKAGE))
    assert cycles == [], "import cycles in bridge/:\n  " + "\n  ".join(cycles)


def test_no_module_of_bridge_is_over_600_lines_without_a_reason() -> None:
    offenders = oversized_modules(ROOT, PACKAGE)
    assert offenders == [], (
        f"over {MAX_LINES} lines, with no 'Size:' line in the docstring saying why:\n  "
        + "\n  ".join(offenders)
    )


# --- the checker itself, on a package made for it ---------------------------------------------


def _write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_reports_run_time_type_checking_and_lazy_cycles_as_chains(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n"
            ),
            "pkg/c.py": "def f():\n    from pkg.d import g\n",
            "pkg/d.py": "import pkg.c\n",
            "pkg/e.py": "import json\nfrom pkg import a\n",  # imports into a cycle, is on none
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.e"] == {"pkg.a"}
    assert import_cycles(graph) == ["pkg.a → pkg.b → pkg.a", "pkg.c → pkg.d → pkg.c"]


def test_a_package_init_counts_from_outside_the_package_only(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            # The usual re-export: the package's __init__ imports its submodule. No cycle.
            "pkg/tools/__init__.py": "from pkg.tools.runner import Runner\n",
            "pkg/tools/base.py": "",
            "pkg/tools/runner.py": "from pkg.tools.base import Tool\nfrom pkg import call\n",
            # call imports tools.base, which runs tools/__init__ → runner → call: a cycle.
            "pkg/call.py": "from pkg.tools.base import Tool\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.tools.runner"] == {"pkg.tools.base", "pkg.call"}
    assert graph["pkg.call"] == {"pkg.tools", "pkg.tools.base"}
    assert import_cycles(graph) == ["pkg.call → pkg.tools → pkg.tools.runner → pkg.call"]


def test_relative_imports_resolve_like_absolute_ones(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "from . import x\n",
            "pkg/sub/x.py": "from .y import f\nfrom .. import z\n",
            "pkg/sub/y.py": "",
            "pkg/z.py": "from .sub import y\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.sub"] == {"pkg.sub.x"}
    assert graph["pkg.sub.x"] == {"pkg.sub.y", "pkg.z"}
    assert graph["pkg.z"] == {"pkg.sub", "pkg.sub.y"}
    assert import_cycles(graph) == ["pkg.sub → pkg.sub.x → pkg.z → pkg.sub"]


def test_a_long_module_needs_a_size_line_in_its_docstring(tmp_path: Path) -> None:
    body = "x = 1\n" * 600
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/short.py": '"""Short."""\n' + "x = 1\n" * 599,  # 600 lines: allowed
            "pkg/long.py": '"""Long."""\n' + body,
            "pkg/table.py": '"""A table.\n\nSize: one row per code point.\n"""\n' + body,
            "pkg/says_size_late.py": '"""Long.\n"""\n# Size: not in the docstring\n' + body,
        },
    )
    assert oversized_modules(tmp_path, "pkg") == [
        "pkg.long (601 lines)",
        "pkg.says_size_late (603 lines)",
    ]
