"""docs/reference.md against the code, both ways: what the code has is documented, and what is
documented exists.

Each check reads the code itself rather than a list kept here: the Makefile's targets, the
argparse parser (`bridge.cli.build_parser`), the `Settings` model and every environment read in
`bridge/`, the FastAPI app's routes plus picows' media stream, an AST scan of `bridge/` for log
calls, and the metrics registry. A failure names each thing missing and where: the code's file
and line, or the reference's line.
"""

from __future__ import annotations

import argparse
import ast
import re
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge import metrics
from bridge.cli import build_parser
from bridge.settings import Settings
from bridge.ws import MEDIA_STREAM_PATH, proxy_for

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference.md"
REF = "docs/reference.md"
BRIDGE = ROOT / "bridge"


# --- the reference's tables -------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    cells: tuple[str, ...]
    line: int

    def ticks(self, column: int) -> list[str]:
        """The `code` spans of one cell, in order."""
        return re.findall(r"`([^`]+)`", self.cells[column]) if column < len(self.cells) else []

    @property
    def name(self) -> str:
        """The row's subject: the first code span of its first cell."""
        ticks = self.ticks(0)
        return ticks[0] if ticks else ""


def _cells(line: str) -> tuple[str, ...]:
    """A Markdown table row split on `|` outside code spans (and not escaped)."""
    cells, current, in_code, previous = [], [], False, ""
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and previous == "\\":
            current[-1] = "|"  # `\|`: a pipe in the cell (GitHub needs it escaped, code too)
        elif char == "|" and not in_code:
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        previous = char
    cells.append("".join(current).strip())
    return tuple(cells)


def rows(kind: str) -> list[Row]:
    """Every row of every table whose header's first cell is `kind` (e.g. "variable")."""
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    out: list[Row] = []
    index = 0
    while index < len(lines):
        if lines[index].startswith("|") and index + 1 < len(lines):
            header = _cells(lines[index])
            body_start = index + 2
            end = body_start
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            if header[0].strip().lower() == kind:
                out += [Row(_cells(lines[i]), i + 1) for i in range(body_start, end)]
            index = end
        else:
            index += 1
    assert out, f"{REF} has no table whose header starts with '{kind}'"
    return out


def by_name(table: Iterable[Row], kind: str) -> dict[str, Row]:
    named: dict[str, Row] = {}
    for row in table:
        assert row.name, f"{REF}:{row.line}: a '{kind}' row without a `name` in its first cell"
        assert row.name not in named, (
            f"{REF}:{row.line}: {kind} `{row.name}` is documented twice "
            f"(also line {named[row.name].line})"
        )
        named[row.name] = row
    return named


def compare(kind: str, in_code: dict[str, str], documented: dict[str, Row]) -> list[str]:
    """Both directions: `in_code` maps a name to where the code has it."""
    problems = [
        f"{kind} `{name}` ({where}) is not documented in {REF}"
        for name, where in sorted(in_code.items())
        if name not in documented
    ]
    problems += [
        f"{kind} `{name}` is documented ({REF}:{row.line}) but not in the code"
        for name, row in sorted(documented.items())
        if name not in in_code
    ]
    return problems


def _fail_on(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


# --- commands ---------------------------------------------------------------------------------


def _make_targets() -> dict[str, str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(".PHONY:"):
            return {
                f"make {t}": f"Makefile:{number}"
                for t in line.split(":", 1)[1].split()
                if t != "FORCE"
            }
    raise AssertionError("Makefile has no .PHONY line")


def test_every_make_target_is_documented_and_every_documented_one_exists() -> None:
    documented = by_name(rows("target"), "make target")
    _fail_on(compare("make target", _make_targets(), documented))


def _cli_options(
    parser: argparse.ArgumentParser, command: str = "voicebridge"
) -> dict[tuple[str, str], argparse.Action]:
    """(subcommand path, option) → its action, for every leaf subcommand. An option is named by
    its longest flag; a positional by its metavar."""
    out: dict[tuple[str, str], argparse.Action] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_cli_options(sub, f"{command} {name}"))
        elif isinstance(action, argparse._HelpAction):
            continue
        elif action.option_strings:
            out[command, max(action.option_strings, key=len)] = action
        else:
            out[command, str(action.metavar or action.dest.upper())] = action
    return out


def test_every_cli_option_is_documented_with_its_default_and_every_documented_one_exists() -> None:
    options = _cli_options(build_parser())
    assert len({command for command, _ in options}) >= 3  # serve, call, persona check
    documented: dict[tuple[str, str], Row] = {}
    for row in rows("command"):
        option = row.ticks(1)
        assert row.name and option, f"{REF}:{row.line}: expected `command` | `option` | …"
        documented[row.name, option[0].split()[0]] = row
    problems = [
        f"`{command} {option}` (bridge/cli.py build_parser) is not documented in {REF}"
        for command, option in sorted(options)
        if (command, option) not in documented
    ]
    problems += [
        f"`{command} {option}` is documented ({REF}:{row.line}) but the parser has no such option"
        for (command, option), row in sorted(documented.items())
        if (command, option) not in options
    ]
    for key, action in options.items():
        row = documented.get(key)
        default = action.default
        if row is None or default in (None, "", [], False, argparse.SUPPRESS):
            continue
        if str(default) not in row.ticks(2):
            problems.append(
                f"`{' '.join(key)}` defaults to {default!r} in bridge/cli.py; "
                f"{REF}:{row.line} says {row.cells[2]!r}"
            )
    _fail_on(problems)


# --- environment ------------------------------------------------------------------------------


def _literal_values(annotation: Any) -> set[str] | None:
    """The values of a `Literal[...]` (also inside `X | None`), else None."""
    if typing.get_origin(annotation) is typing.Literal:
        return {str(v) for v in typing.get_args(annotation)}
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            values = _literal_values(arg)
            if values is not None:
                return values
    return None


def _is_bool(annotation: Any) -> bool:
    return annotation is bool or bool in typing.get_args(annotation)


def _default_matches(default: Any, cell: str, ticks: list[str]) -> bool:
    if default is None:
        return cell.strip().lower().startswith("unset")
    if not ticks:
        return False
    if isinstance(default, bool):
        return ticks[0].lower() == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(ticks[0]) == float(default)
        except ValueError:
            return False
    # Settings read case-insensitively (LOG_LEVEL, REALTIME_PROVIDER) are documented in
    # lower case, as a user types them.
    return ticks[0].lower() == str(default).lower()


def test_every_setting_is_documented_with_its_default_and_allowed_values() -> None:
    fields = Settings.model_fields
    documented = by_name(rows("variable"), "environment variable")
    problems = compare(
        "environment variable", {n: "bridge/settings.py Settings" for n in fields}, documented
    )
    for name, info in fields.items():
        row = documented.get(name)
        if row is None:
            continue
        if not _default_matches(info.default, row.cells[1], row.ticks(1)):
            problems.append(
                f"{name} defaults to {info.default!r} in bridge/settings.py; "
                f"{REF}:{row.line} says {row.cells[1]!r} (write `value`, or 'unset' for None)"
            )
        allowed = _literal_values(info.annotation)
        if allowed is not None and {t.lower() for t in row.ticks(2)} != {
            a.lower() for a in allowed
        }:
            problems.append(
                f"{name} takes {sorted(allowed)} in bridge/settings.py; "
                f"{REF}:{row.line} lists {sorted(row.ticks(2))}"
            )
        if _is_bool(info.annotation) and not {"true", "false"} <= set(row.ticks(2)):
            problems.append(f"{name} is a boolean: {REF}:{row.line} should list `true`, `false`")
    _fail_on(problems)


def test_env_example_names_every_setting() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    named = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    missing = sorted(set(Settings.model_fields) - named)
    unknown = sorted(named - set(Settings.model_fields))
    assert not missing and not unknown, f".env.example: missing {missing}, unknown {unknown}"


def _environment_reads() -> dict[str, str]:
    """Names read with `os.environ[...]`, `os.environ.get(...)` or `os.getenv(...)` in
    `bridge/`, and the proxy variables wherever `bridge/` asks urllib for the proxies."""
    reads: dict[str, str] = {}
    for path, tree in _modules():
        for node in ast.walk(tree):
            name: str | None = None
            if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
                key = node.slice
                name = key.value if isinstance(key, ast.Constant) else None
            elif isinstance(node, ast.Call) and node.args:
                func = ast.unparse(node.func)
                first = node.args[0]
                if func.endswith(("environ.get", "getenv")) and isinstance(first, ast.Constant):
                    name = first.value
            if isinstance(node, ast.Attribute) and node.attr in ("getproxies", "proxy_bypass"):
                for proxy in PROXY_PROBES:
                    reads.setdefault(proxy, f"{_rel(path)}:{node.lineno} (urllib.request)")
            if isinstance(name, str):
                reads.setdefault(name, f"{_rel(path)}:{node.lineno}")
    return reads


WSS, WS = "wss://realtime.example.com/v1/realtime", "ws://realtime.example.com/v1/realtime"
PROXY = "http://proxy.example.com:3128"
PROXY_PROBES: dict[str, tuple[dict[str, str], dict[str, str | None]]] = {
    # variable → (environment, the proxy `bridge.ws.proxy_for` must then pick for each URL)
    "HTTPS_PROXY": ({"HTTPS_PROXY": PROXY}, {WSS: PROXY, WS: None}),
    "HTTP_PROXY": ({"HTTP_PROXY": PROXY}, {WS: PROXY, WSS: None}),
    "ALL_PROXY": ({"ALL_PROXY": PROXY}, {WSS: PROXY, WS: PROXY}),
    "NO_PROXY": ({"HTTPS_PROXY": PROXY, "NO_PROXY": "realtime.example.com"}, {WSS: None}),
}


def _reads_multiproc_dir(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent/metrics")
    got = metrics.multiprocess_dir()
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    ok = got == "/nonexistent/metrics" and metrics.multiprocess_dir() is None
    return [] if ok else ["bridge.metrics.multiprocess_dir() ignores PROMETHEUS_MULTIPROC_DIR"]


READ_PROBES = {"PROMETHEUS_MULTIPROC_DIR": _reads_multiproc_dir}
"""Other variables the bridge reads, each with a check that it does: its problems."""


def test_every_other_environment_variable_is_documented_and_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    documented = by_name(rows("other variable"), "environment variable")
    problems = compare("environment variable", _environment_reads(), documented)
    for name, row in documented.items():
        probe = PROXY_PROBES.get(name)
        if name in READ_PROBES:
            problems += READ_PROBES[name](monkeypatch)
            continue
        if probe is None:
            problems.append(f"{REF}:{row.line}: nothing here shows that the bridge reads {name}")
            continue
        for variable in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(variable, raising=False)
            monkeypatch.delenv(variable.lower(), raising=False)
        environment, expected = probe
        for variable, value in environment.items():
            monkeypatch.setenv(variable, value)
        for url, proxy in expected.items():
            got = proxy_for(url)
            if got != proxy:
                problems.append(f"with {environment}, proxy_for({url!r}) is {got!r}, not {proxy!r}")
    # Loopback (the local engine) is never proxied, whatever the environment says.
    monkeypatch.setenv("ALL_PROXY", PROXY)
    assert proxy_for("ws://127.0.0.1:8765/v1/realtime") is None
    _fail_on(problems)


# --- routes -----------------------------------------------------------------------------------


def _app_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, included routers too: FastAPI flattens them into the
    app's routes in older releases and keeps them whole (`original_router`) in newer ones."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _app_routes(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif type(route).__name__ in ("APIWebSocketRoute", "WebSocketRoute"):
            yield "WS", prefix + route.path
        else:
            for method in sorted(route.methods or ()):
                yield method, prefix + route.path


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    from bridge.app import create_app

    # Local settings, with the softphone on: every route the app can have.
    app = create_app(Settings(_env_file=None, SOFTPHONE_ENABLED=True))  # type: ignore[call-arg]
    in_code = {
        f"{method} {path}": "bridge.app.create_app" for method, path in _app_routes(app.routes)
    }
    in_code[f"WS {MEDIA_STREAM_PATH.decode()}"] = "bridge/ws.py MEDIA_STREAM_PATH (picows)"
    assert len(in_code) >= 8
    documented: dict[str, Row] = {}
    for row in rows("method"):
        paths = row.ticks(1)
        methods = [m.strip() for m in row.cells[0].split(",") if m.strip()]
        assert methods and paths, f"{REF}:{row.line}: expected METHOD | `path` | …"
        for method in methods:
            documented[f"{method} {paths[0]}"] = row
    _fail_on(compare("route", in_code, documented))


# --- log events -------------------------------------------------------------------------------

LEVELS = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "exception": "error",  # logs at error, with the traceback
    "critical": "critical",
}
# Keywords of a log call that steer the logging library rather than add a field.
NOT_FIELDS = {"exc_info", "stack_info", "stacklevel"}
LOGGER_NAMES = {"log", "logger", "_log"}


@dataclass
class Event:
    levels: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    level_dynamic: bool = False
    fields_dynamic: bool = False
    sites: list[str] = field(default_factory=list)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(BRIDGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _is_logger(node: ast.expr) -> bool:
    """`log`, `self.log`, `get_logger(...)`, `logging.getLogger(...)`."""
    if isinstance(node, ast.Name):
        return node.id in LOGGER_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in LOGGER_NAMES
    if isinstance(node, ast.Call):
        return ast.unparse(node.func).endswith(("get_logger", "getLogger"))
    return False


def _level_of(node: ast.expr) -> str | None:
    """`log.warning` → "warning"; anything else None."""
    if isinstance(node, ast.Attribute) and node.attr in LEVELS and _is_logger(node.value):
        return LEVELS[node.attr]
    return None


def _name(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _keyword_fields(event: Event, keywords: Iterable[ast.keyword]) -> None:
    for keyword in keywords:
        if keyword.arg is not None:
            if keyword.arg not in NOT_FIELDS:
                event.fields.add(keyword.arg)
        elif isinstance(keyword.value, ast.Dict) and all(_name(k) for k in keyword.value.keys):
            event.fields.update(_name(k) for k in keyword.value.keys)  # type: ignore[misc]
        else:
            event.fields_dynamic = True  # **fields


def log_events(modules: Iterable[tuple[Path, ast.Module]] | None = None) -> dict[str, Event]:
    """Every log event `bridge/` (or `modules`) can write, from its source:

    - `log.info("name", field=...)` (any level; `log`, `logger`, `get_logger(...)`),
    - `(log.info if ok else log.warning)("name", ...)`,
    - `getattr(log, level)("name", ...)` (level then unknown unless a constant),
    - `run(log.warning, "name", field=...)` (a log method handed to another call),
    - `Log("name", {"field": ...}, "level")` (the call core's log effects, "info" by default),
    - `self._log("name", "level", field=...)` (the call core's helper that makes one).
    """
    events: dict[str, Event] = {}

    def add(name: str, site: str) -> Event:
        event = events.setdefault(name, Event())
        event.sites.append(site)
        return event

    for path, tree in _modules() if modules is None else modules:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            site = f"{_rel(path)}:{node.lineno}"
            func = node.func
            first = _name(node.args[0]) if node.args else None
            level = _level_of(func)
            if level is not None and first is not None:
                event = add(first, site)
                event.levels.add(level)
                _keyword_fields(event, node.keywords)
            elif isinstance(func, ast.IfExp) and first is not None:
                branches = [_level_of(func.body), _level_of(func.orelse)]
                if all(branches):
                    event = add(first, site)
                    event.levels.update(b for b in branches if b)
                    _keyword_fields(event, node.keywords)
            elif (
                isinstance(func, ast.Call)
                and ast.unparse(func.func) == "getattr"
                and len(func.args) == 2
                and _is_logger(func.args[0])
                and first is not None
            ):
                event = add(first, site)
                constant = _name(func.args[1])
                if constant in LEVELS:
                    event.levels.add(LEVELS[constant])
                else:
                    event.level_dynamic = True
                _keyword_fields(event, node.keywords)
            elif (
                isinstance(func, ast.Attribute)
                and func.attr == "_log"
                and isinstance(func.value, ast.Name)
                and func.value.id == "self"
                and first is not None
            ):
                event = add(first, site)
                level_node = node.args[1] if len(node.args) > 1 else None
                options = (
                    [level_node.body, level_node.orelse]
                    if isinstance(level_node, ast.IfExp)
                    else [level_node]
                )
                for option in options:
                    constant = "info" if option is None else _name(option)
                    if constant in LEVELS:
                        event.levels.add(LEVELS[constant])
                    else:
                        event.level_dynamic = True
                _keyword_fields(event, node.keywords)
            elif isinstance(func, ast.Name) and func.id == "Log" and first is not None:
                event = add(first, site)
                level_node = node.args[2] if len(node.args) > 2 else None
                for keyword in node.keywords:
                    if keyword.arg == "level":
                        level_node = keyword.value
                constant = "info" if level_node is None else _name(level_node)
                if constant in LEVELS:
                    event.levels.add(LEVELS[constant])
                else:
                    event.level_dynamic = True
                fields = node.args[1] if len(node.args) > 1 else None
                if isinstance(fields, ast.Dict) and all(_name(k) for k in fields.keys):
                    event.fields.update(_name(k) for k in fields.keys)  # type: ignore[misc]
                elif fields is not None:
                    event.fields_dynamic = True
            else:
                for index, arg in enumerate(node.args[:-1]):
                    handed = _level_of(arg)
                    name = _name(node.args[index + 1])
                    if handed is not None and name is not None:
                        event = add(name, site)
                        event.levels.add(handed)
                        _keyword_fields(event, node.keywords)
    return events


def test_the_scan_finds_log_calls_of_every_shape() -> None:
    source = """
log.info("plain", a=1, exc_info=True)
(log.info if ok else log.warning)("either", b=2)
getattr(log, level)("dynamic", **fields)
context.run(log.warning, "handed", c=3)
Log("effect", {"d": 1}, "warning")
self._log("core", "error", e=1)
self._log("core_either", "info" if ok else "warning", f=2)
Log("effect_info", line)
get_logger("x").error("direct", **{"from": 1})
parser.error("not a log call")
"""
    scanned = log_events([(BRIDGE / "example.py", ast.parse(source))])
    assert set(scanned) == {
        "plain",
        "either",
        "dynamic",
        "handed",
        "effect",
        "effect_info",
        "direct",
        "core",
        "core_either",
    }
    assert scanned["plain"].fields == {"a"} and scanned["plain"].levels == {"info"}
    assert scanned["either"].levels == {"info", "warning"}
    assert scanned["dynamic"].level_dynamic and scanned["dynamic"].fields_dynamic
    assert scanned["handed"].levels == {"warning"} and scanned["handed"].fields == {"c"}
    assert scanned["effect"].levels == {"warning"} and scanned["effect"].fields == {"d"}
    assert scanned["effect_info"].levels == {"info"} and scanned["effect_info"].fields_dynamic
    assert scanned["direct"].fields == {"from"} and scanned["direct"].levels == {"error"}
    assert scanned["core"].levels == {"error"} and scanned["core"].fields == {"e"}
    assert scanned["core_either"].levels == {"info", "warning"}


def test_every_log_event_is_documented_with_its_level_and_fields_and_vice_versa() -> None:
    events = log_events()
    assert len(events) >= 20
    documented = by_name(rows("event"), "log event")
    problems = compare(
        "log event", {name: ", ".join(e.sites[:3]) for name, e in events.items()}, documented
    )
    for name, event in sorted(events.items()):
        row = documented.get(name)
        if row is None:
            continue
        where = f"{REF}:{row.line}"
        levels, fields = set(row.ticks(1)), set(row.ticks(2))
        if not event.levels <= levels:
            problems.append(
                f"log event `{name}` is logged at {sorted(event.levels - levels)} "
                f"({event.sites[0]}); {where} lists {sorted(levels)}"
            )
        if not event.level_dynamic and not levels <= event.levels:
            problems.append(
                f"log event `{name}`: {where} lists level(s) {sorted(levels - event.levels)} "
                f"the code never uses ({event.sites[0]})"
            )
        if not event.fields <= fields:
            problems.append(
                f"log event `{name}` has field(s) {sorted(event.fields - fields)} "
                f"({event.sites[0]}) not in {where}"
            )
        if not event.fields_dynamic and not fields <= event.fields:
            problems.append(
                f"log event `{name}`: {where} lists field(s) {sorted(fields - event.fields)} "
                f"the code never logs ({', '.join(event.sites[:3])})"
            )
    _fail_on(problems)


# --- metrics ----------------------------------------------------------------------------------


def _label_values_in_code() -> dict[tuple[str, str], set[str]]:
    """(metric attribute, label) → constant values passed to `.labels(...)` in `bridge/`."""
    found: dict[tuple[str, str], set[str]] = {}
    for _path, tree in _modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "labels"
            ):
                owner = node.func.value
                attr = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                for keyword in node.keywords:
                    value = _name(keyword.value)
                    if keyword.arg and value is not None:
                        found.setdefault((attr, keyword.arg), set()).add(value)
    return found


def test_every_metric_is_documented_with_its_type_labels_and_values_and_vice_versa() -> None:
    collectors = list(metrics.REGISTRY._collector_to_names)
    exposed = {
        c._name + ("_total" if c._type == "counter" else ""): c  # type: ignore[attr-defined]
        for c in collectors
    }
    documented = by_name(rows("metric"), "metric")
    problems = compare("metric", {n: "bridge/metrics.py REGISTRY" for n in exposed}, documented)
    constants = {
        "voicebridge_calls_total": ("outcome", metrics.CALL_OUTCOMES),
        "voicebridge_tool_latency_seconds": ("outcome", metrics.TOOL_OUTCOMES),
        "voicebridge_frames_dropped_total": ("direction", metrics.FRAME_DIRECTIONS),
    }
    attributes = {
        id(value): attr for attr, value in vars(metrics).items() if not attr.startswith("_")
    }
    used = _label_values_in_code()
    for name, collector in sorted(exposed.items()):
        row = documented.get(name)
        if row is None:
            continue
        where = f"{REF}:{row.line}"
        kind = collector._type  # type: ignore[attr-defined]
        if row.cells[1].strip() != kind:
            problems.append(f"metric `{name}` is a {kind}; {where} says {row.cells[1]!r}")
        labels = tuple(collector._labelnames)  # type: ignore[attr-defined]
        if tuple(row.ticks(2)) != labels:
            problems.append(f"metric `{name}` has labels {labels}; {where} lists {row.ticks(2)}")
        values = set(row.ticks(3))
        expected: set[str] = set()
        if name in constants:
            expected |= set(constants[name][1])
        attr = attributes.get(id(collector), "")
        for (owner, _label), found in used.items():
            if owner == attr:
                expected |= found
        if not expected <= values:
            problems.append(
                f"metric `{name}`: label value(s) {sorted(expected - values)} used in bridge/ "
                f"are not in {where}"
            )
    _fail_on(problems)
