"""Which tools a call offers the model, built once per call, and what they hold for the
process's life.

The persona lists the tools it wants: built-in ones, its own HTTP tools (`http_tool`) and MCP
servers (`mcp_client`). A tool whose service is not configured (no Tavily key, no Twilio
credentials, no `WEBHOOK_SIGNING_SECRET` for HTTP tools) is left out of the session, so the
model never promises what the bridge cannot do, and `unavailable_tools` tells the operator
why at start-up.

`build_tools` builds each tool of a call once, into a `CallTools` that is both what the
session offers (`function_tools`) and what the runner looks up by name: the model cannot
be offered a tool other than the one that runs, and per-call resources (a Tavily client)
exist once.

`ToolCatalogue` is the object the server holds (`Services.tools`), started and closed with
the app: one HTTP client for every HTTP tool, and the MCP servers' listings, kept fresh in
the background beside the calls, so a call reads the last listing (`tools_for`) and never
waits for a server. A server that cannot be listed when a call starts has its tools left
out of that call (`mcp_server_unavailable`), and is tried again sooner (`RETRY_S`) than a
healthy one is refreshed (`REFRESH_S`); a call that finds it unreachable asks for a new
listing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio.lowlevel
import httpx

from bridge.logs import add_secrets, get_logger
from bridge.persona import Persona, PersonaBook
from bridge.realtime.events import FunctionTool
from bridge.settings import Settings
from bridge.tools import end_call, http_tool, transfer, web_search
from bridge.tools.base import Tool, ToolFactory

if TYPE_CHECKING:
    from bridge.tools.mcp_client import McpSource

__all__ = [
    "CATALOGUE",
    "REFRESH_S",
    "RETRY_S",
    "CallTools",
    "CatalogueEntry",
    "ToolCatalogue",
    "UnavailableTool",
    "build_tools",
    "unavailable_tools",
]

log = get_logger("voicebridge.tools")

REFRESH_S = 60.0
"""How often a healthy MCP server's tools are listed again."""
RETRY_S = 5.0
"""How soon an MCP server that could not be listed is tried again."""


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


def build_tools(
    persona: Persona, settings: Settings, http: httpx.AsyncClient | None = None
) -> CallTools:
    """The tools one call offers: the persona's, minus those whose service is not set up.
    Call it once per call and hand the result to both the session and the runner. `http` is
    the process's client for HTTP tools (`ToolCatalogue`); without it each HTTP tool opens
    its own. MCP tools come from the catalogue (`ToolCatalogue.tools_for`)."""
    return CallTools(_own_tools(persona, settings, http))


def _own_tools(persona: Persona, settings: Settings, http: httpx.AsyncClient | None) -> list[Tool]:
    tools = [
        CATALOGUE[name].build(persona, settings)
        for name in persona.tools.enabled
        if CATALOGUE[name].unavailable(settings) is None
    ]
    if persona.tools.http and http_tool.unavailable(settings) is None:
        for name, config in persona.tools.http.items():
            tools.append(http_tool.build(name, config, settings, http))
    return tools


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
    TAVILY_API_KEY, HTTP tools without WEBHOOK_SIGNING_SECRET. Call it once at start-up and
    log each entry (`log.warning("tool_unavailable", **asdict(entry))`).
    """
    out: list[UnavailableTool] = []
    http_reason = http_tool.unavailable(settings)
    for persona in personas:
        for name in persona.tools.enabled:
            reason = CATALOGUE[name].unavailable(settings)
            if reason is not None:
                out.append(UnavailableTool(persona.name, name, f"not offered: {reason}"))
        for name in persona.tools.http if http_reason is not None else ():
            out.append(UnavailableTool(persona.name, name, f"not offered: {http_reason}"))
    return out


class ToolCatalogue:
    """Builds each call's tools; `start()` at the app's start-up, `aclose()` at its end."""

    def __init__(
        self,
        settings: Settings,
        personas: PersonaBook,
        *,
        refresh_s: float = REFRESH_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self.settings = settings
        self.personas = personas
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self._http: httpx.AsyncClient | None = None
        self._sources: dict[str, list[McpSource]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # The values `${VAR}`s resolved to: never in a log line.
        add_secrets(s for persona in personas for s in persona.secrets)

    @property
    def sources(self) -> dict[str, list[McpSource]]:
        """Each persona's MCP servers, by persona name (empty before `start`)."""
        return self._sources

    async def start(self) -> None:
        """The shared HTTP client, and each MCP server listed once (all at once, each within
        its timeout) before the first call, then kept fresh in the background."""
        http_wanted = any(p.tools.http for p in self.personas)
        if http_wanted and http_tool.unavailable(self.settings) is None:
            self._http = await http_tool.new_client()
            # anyio imports its asyncio backend at the first connection: here, not in a call.
            await anyio.lowlevel.checkpoint()
        if not any(p.mcp_servers for p in self.personas):
            return
        from bridge.tools.mcp_client import McpSource  # half a second of imports: only here

        tls = await http_tool.tls_context()
        for persona in self.personas:
            self._sources[persona.name] = [
                McpSource(persona.name, name, config, tls)
                for name, config in persona.mcp_servers.items()
            ]
        every = [s for sources in self._sources.values() for s in sources]
        await asyncio.gather(*(s.refresh() for s in every))
        for persona in self.personas:
            for entry in self._left_out(persona):
                log.warning(
                    "tool_unavailable", persona=entry.persona, tool=entry.tool, reason=entry.reason
                )
        self._tasks = [
            asyncio.create_task(self._keep_fresh(s), name=f"mcp-refresh:{s.persona}:{s.name}")
            for s in every
        ]

    async def _keep_fresh(self, source: McpSource) -> None:
        while True:
            delay = self.refresh_s if source.listing is not None else self.retry_s
            source.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(source.wake.wait(), delay)
            await source.refresh()

    def _left_out(self, persona: Persona) -> list[UnavailableTool]:
        """Listed or allow-listed MCP tools no call of `persona` will offer, and why."""
        taken = set(build_tools(persona, self.settings, self._http))
        out = []
        for source in self._sources.get(persona.name, ()):
            if source.listing is None:
                continue
            for name in source.missing():
                out.append(
                    UnavailableTool(
                        persona.name, name, f"MCP server {source.name} does not list it"
                    )
                )
            for spec in source.offered():
                if spec.name in taken:
                    out.append(
                        UnavailableTool(
                            persona.name,
                            spec.name,
                            f"MCP server {source.name}: the name is taken by another tool",
                        )
                    )
                taken.add(spec.name)
        return out

    def tools_for(self, persona: Persona) -> CallTools:
        """The tools of one call of `persona`, from what is known now (no I/O): its built-in
        and HTTP tools, then each listed MCP server's (a name already taken is skipped). A
        server without a listing is logged (`mcp_server_unavailable`) and left out."""
        tools = {t.name: t for t in _own_tools(persona, self.settings, self._http)}
        for source in self._sources.get(persona.name, ()):
            if source.listing is None:
                log.warning(
                    "mcp_server_unavailable",
                    persona=persona.name,
                    server=source.name,
                    error=source.error,
                )
                continue
            for spec in source.offered():
                if spec.name not in tools:
                    tools[spec.name] = source.tool(spec)
        return CallTools(tools.values())

    async def aclose(self) -> None:
        """Stop the refreshers and close every client."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for sources in self._sources.values():
            for source in sources:
                await source.aclose()
        self._sources = {}
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
