"""Which tools a call offers the model, built once per call.

The persona lists the tools it wants; a tool whose service is not configured (no Tavily key,
no Twilio credentials) is left out of the session, so the model never promises what the
bridge cannot do, and `unavailable_tools` tells the operator why at start-up.

`build_tools` builds each tool of a call once, into a `CallTools` that is both what the
session offers (`function_tools`) and what the runner looks up by name: the model cannot
be offered a tool other than the one that runs, and per-call resources (a Tavily client)
exist once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from bridge.persona import Persona
from bridge.realtime.events import FunctionTool
from bridge.settings import Settings
from bridge.tools import end_call, transfer, web_search
from bridge.tools.base import Tool, ToolFactory

__all__ = [
    "CATALOGUE",
    "CallTools",
    "CatalogueEntry",
    "UnavailableTool",
    "build_tools",
    "unavailable_tools",
]


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One tool the bridge knows: why it cannot be offered with some settings, and its build."""

    unavailable: Callable[[Settings], str | None]
    build: ToolFactory


CATALOGUE: Mapping[str, CatalogueEntry] = {
    web_search.NAME: CatalogueEntry(web_search.unavailable, web_search.build),
    transfer.NAME: CatalogueEntry(transfer.unavailable, transfer.build),
    end_call.NAME: CatalogueEntry(end_call.unavailable, end_call.build),
}
"""Every tool a persona may list (`persona.TOOL_NAMES`), by the name the model calls it."""


class CallTools(Mapping[str, Tool]):
    """The tools of one call, by name, in the persona's order; `function_tools` is the same
    tools as the session's `tools`. Immutable once built."""

    __slots__ = ("_by_name", "_function_tools")

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        by_name: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in by_name:
                raise ValueError(f"two tools are named {tool.name!r}")
            by_name[tool.name] = tool
        self._by_name = by_name
        self._function_tools = tuple(tool.function_tool for tool in by_name.values())

    @property
    def function_tools(self) -> tuple[FunctionTool, ...]:
        """The `tools` of the call's session (`persona.session_config(..., tools=...)`)."""
        return self._function_tools

    def __getitem__(self, name: str) -> Tool:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"CallTools({list(self._by_name)!r})"


def build_tools(persona: Persona, settings: Settings) -> CallTools:
    """The tools one call offers: the persona's, minus those whose service is not set up.
    Call it once per call and hand the result to both the session and the runner."""
    return CallTools(
        CATALOGUE[name].build(persona, settings)
        for name in persona.tools.enabled
        if CATALOGUE[name].unavailable(settings) is None
    )


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
    TAVILY_API_KEY. Call it once at start-up and log each entry
    (`log.warning("tool_unavailable", **asdict(entry))`).
    """
    out: list[UnavailableTool] = []
    for persona in personas:
        for name in persona.tools.enabled:
            reason = CATALOGUE[name].unavailable(settings)
            if reason is not None:
                out.append(UnavailableTool(persona.name, name, f"not offered: {reason}"))
    return out
