"""Which tools a call offers the model, and the small types every tool shares.

A tool is data plus one coroutine: a name, a description and a JSON schema (what the model
sees), an async implementation, a timeout and an optional filler line for when it is slow.
The persona lists the tools it wants; a tool whose service is not configured (no Tavily key,
no Twilio credentials) is left out of the session, so the model never promises what the
bridge cannot do, and `unavailable_tools` tells the operator why at start-up.

Call control (transfer, hang-up) is not done inside a tool: the tool only validates and
returns a `Handoff`, and the runner carries it out once the last words have played.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bridge.persona import Persona
from bridge.realtime.events import FunctionTool
from bridge.settings import Settings

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Handoff",
    "Tool",
    "ToolEnv",
    "ToolResult",
    "UnavailableTool",
    "build_tools",
    "function_tools",
    "speak_exactly",
    "unavailable_tools",
]


@dataclass(frozen=True, slots=True)
class ToolEnv:
    """What a tool may know about its call: who answers, the process settings, which call."""

    persona: Persona
    settings: Settings
    call_sid: str
    caller_number: str = ""
    called_number: str = ""

    def render(self, text: str) -> str:
        """A persona template (a filler, a handoff line) filled in for this call, now."""
        return self.persona.render(text, caller_number=self.caller_number)


@dataclass(frozen=True, slots=True)
class Handoff:
    """A call-control action: say `line`, let it play out, then redirect or complete the call.

    `origin` is who asked: a handoff the model chose is called off when the caller talks over
    its line (the model should hear them first); one the caller chose on the keypad is not.
    """

    kind: Literal["transfer", "hangup"]
    line: str
    reason: str
    target: str | None = None
    number: str | None = None
    origin: Literal["model", "keypad", "limit"] = "model"


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool hands back: `output` is the function_call_output text the model reads."""

    output: str
    ok: bool = True
    error: str | None = None
    respond: bool = True
    """Ask the model to answer the output; call control answers with its own line instead."""
    handoff: Handoff | None = None

    @classmethod
    def of(
        cls, data: dict[str, Any], *, respond: bool = True, handoff: Handoff | None = None
    ) -> ToolResult:
        return cls(json.dumps(data, ensure_ascii=False), respond=respond, handoff=handoff)

    @classmethod
    def failure(cls, message: str, *, respond: bool = True) -> ToolResult:
        """An error the model can talk about ("the search timed out"); the call goes on."""
        text = json.dumps({"ok": False, "error": message}, ensure_ascii=False)
        return cls(text, ok=False, error=message, respond=respond)


ToolImpl = Callable[[dict[str, Any], ToolEnv], Awaitable[ToolResult]]


@dataclass(frozen=True, slots=True)
class Tool:
    """One tool as a call offers it. `filler` is a persona template, spoken when the tool has
    not answered within the runner's filler delay; `close` releases per-call resources."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: ToolImpl
    timeout_s: float
    filler: str | None = None
    close: Callable[[], Awaitable[None]] | None = field(default=None, compare=False)

    @property
    def function_tool(self) -> FunctionTool:
        return FunctionTool(self.name, self.description, self.parameters)


def speak_exactly(text: str) -> str:
    """Response instructions that make the model say `text` word for word (fillers, handoff
    lines, keypad announcements): the bridge has no voice of its own."""
    return f'Say exactly this to the caller, and nothing else: "{text}"'


# --- The catalogue ------------------------------------------------------------------------------


def _factories() -> dict[str, tuple[Callable[[Settings], str | None], ToolFactory]]:
    # Imported here: each tool module imports this one for the shared types.
    from bridge.tools import end_call, transfer, web_search

    return {
        "web_search": (web_search.unavailable, web_search.build),
        "transfer_call": (transfer.unavailable, transfer.build),
        "end_call": (end_call.unavailable, end_call.build),
    }


ToolFactory = Callable[[Persona, Settings], Tool]


def build_tools(
    persona: Persona, settings: Settings, http: httpx.AsyncClient | None = None
) -> dict[str, Tool]:
    """The tools one call offers: the persona's, minus those whose service is not set up.
    `http` is the process's client for HTTP tools (`ToolCatalogue`); without it each HTTP
    tool opens its own. MCP tools come from the catalogue (`ToolCatalogue.tools_for`)."""
    from bridge.tools import http_tool

    factories = _factories()
    tools: dict[str, Tool] = {}
    for name in persona.tools.enabled:
        unavailable, build = factories[name]
        if unavailable(settings) is None:
            tools[name] = build(persona, settings)
    if persona.tools.http and http_tool.unavailable(settings) is None:
        for name, config in persona.tools.http.items():
            tools[name] = http_tool.build(name, config, settings, http)
    return tools


def function_tools(persona: Persona, settings: Settings) -> tuple[FunctionTool, ...]:
    """The `tools` of the call's session (`persona.session_config(..., tools=...)`), without
    MCP tools (their schemas are the servers')."""
    return tuple(tool.function_tool for tool in build_tools(persona, settings).values())


@dataclass(frozen=True, slots=True)
class UnavailableTool:
    """A tool a persona asks for that calls will not offer, and why (for the start-up log)."""

    persona: str
    tool: str
    reason: str

    def __str__(self) -> str:
        return f"persona {self.persona!r}: {self.tool}: {self.reason}"


def unavailable_tools(personas: Iterable[Persona], settings: Settings) -> list[UnavailableTool]:
    """Why tools the personas list will not be offered, e.g. web_search without
    TAVILY_API_KEY, HTTP tools without WEBHOOK_SIGNING_SECRET; keypad transfers without
    Twilio credentials are reported too. Call it once at start-up and log each entry
    (`log.warning("tool_unavailable", **asdict(entry))`).
    """
    from bridge.tools import dtmf, http_tool

    factories = _factories()
    out: list[UnavailableTool] = []
    for persona in personas:
        for name in persona.tools.enabled:
            reason = factories[name][0](settings)
            if reason is not None:
                out.append(UnavailableTool(persona.name, name, f"not offered: {reason}"))
        reason = http_tool.unavailable(settings)
        for name in persona.tools.http if reason is not None else ():
            out.append(UnavailableTool(persona.name, name, f"not offered: {reason}"))
        for digit, reason in dtmf.unavailable_actions(persona, settings):
            out.append(UnavailableTool(persona.name, f"dtmf {digit}", reason))
    return out
