"""The tools of the process: what each call gets (`tools_for`), from the built-in tools, the
personas' HTTP tools and their MCP servers' listings, and what those hold for the process's
life (one HTTP client for every HTTP tool, one per MCP server, the listings' refreshers).

An object with `start()` and `aclose()` because the MCP listings are kept fresh in the
background, beside the calls, from the app's start-up to its shutdown: a call reads the last
listing and never waits for a server. A server that cannot be listed when a call starts has
its tools left out of that call (`mcp_server_unavailable`), and is tried again sooner
(`retry_s`) than a healthy one is refreshed (`refresh_s`); a call that finds it unreachable
asks for a new listing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import anyio.lowlevel
import httpx

from bridge.logs import add_secrets, get_logger
from bridge.persona import Persona, PersonaBook
from bridge.settings import Settings
from bridge.tools import http_tool
from bridge.tools.registry import Tool, UnavailableTool, build_tools

if TYPE_CHECKING:
    from bridge.tools.mcp_client import McpSource

__all__ = ["REFRESH_S", "RETRY_S", "ToolCatalogue"]

log = get_logger("voicebridge.tools")

REFRESH_S = 60.0
"""How often a healthy MCP server's tools are listed again."""
RETRY_S = 5.0
"""How soon an MCP server that could not be listed is tried again."""


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

    def tools_for(self, persona: Persona) -> dict[str, Tool]:
        """The tools of one call of `persona`, from what is known now (no I/O): its built-in
        and HTTP tools, then each listed MCP server's (a name already taken is skipped). A
        server without a listing is logged (`mcp_server_unavailable`) and left out."""
        tools = build_tools(persona, self.settings, self._http)
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
        return tools

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
