"""One MCP server a persona declares (`mcp_servers.NAME`), reached with the `mcp` SDK's client
over streamable HTTP: its tool listing, kept fresh in the background, and calls through it.

The bridge is the MCP client, so MCP tools work with every Realtime provider, the local
engine included: the model sees plain function tools. Each listing and each call opens a
short client session (a `server/discover` or initialize exchange, then the request) on one
HTTP client per server, so connections are reused while no session state can go stale
between calls; a server restarted between two calls costs nothing. The listing is never
fetched on a call's audio path: calls read the last one (`tools`).

Importing the SDK takes about half a second, so the catalogue imports this module only when
a persona declares MCP servers, at start-up.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import httpx2
import mcp.types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bridge.errors import describe
from bridge.logs import get_logger
from bridge.persona import McpServer
from bridge.persona.integrations import FUNCTION_NAME
from bridge.tools.base import Tool, ToolEnv, ToolResult
from bridge.tools.http_tool import MAX_OUTPUT_BYTES

__all__ = ["MAX_PAGES", "McpSource", "output_text"]

log = get_logger("voicebridge.tools.mcp")

MAX_PAGES = 10
"""Pages of a tool listing read at most: a server that paginates forever is cut off."""
_EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


def _root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (the SDK's task groups wrap a refused connection)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def output_text(result: mcp.types.CallToolResult) -> str:
    """A tool result as the model reads it: the structured content as JSON when there is
    some, else the text parts joined (other kinds named), cut at `MAX_OUTPUT_BYTES`."""
    if result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False)
    else:
        parts = []
        for block in result.content:
            if isinstance(block, mcp.types.TextContent):
                parts.append(block.text)
            else:
                parts.append(f"[{block.type} content]")
        text = "\n".join(parts)
    data = text.encode()
    if len(data) > MAX_OUTPUT_BYTES:
        return data[:MAX_OUTPUT_BYTES].decode(errors="ignore") + "…[cut]"
    return text


class McpSource:
    """One persona's MCP server: the last listing (None while it cannot be listed, with
    `error` saying why), and the tools it gives a call."""

    def __init__(
        self, persona: str, name: str, config: McpServer, tls: ssl.SSLContext | None = None
    ) -> None:
        self.persona = persona
        self.name = name
        self.config = config
        self.listing: tuple[mcp.types.Tool, ...] | None = None
        self.error: str = "not listed yet"
        self.wake = asyncio.Event()
        """Set when a call found the server unreachable: the refresher lists it again now."""
        self._http = httpx2.AsyncClient(
            headers=config.resolved_headers,
            timeout=httpx2.Timeout(config.timeout_seconds),
            verify=tls if tls is not None else True,
        )

    def _session(self) -> Client:
        return Client(
            streamable_http_client(self.config.url, http_client=self._http),
            read_timeout_seconds=self.config.timeout_seconds,
        )

    async def refresh(self) -> None:
        """List the server's tools (every page, within the server's timeout); on failure the
        listing is dropped, so calls starting meanwhile leave the server's tools out."""
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                listed: list[mcp.types.Tool] = []
                async with self._session() as client:
                    cursor: str | None = None
                    for _ in range(MAX_PAGES):
                        page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                        listed += page.tools
                        cursor = page.next_cursor
                        if cursor is None:
                            break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = (
                describe(_root_cause(exc))
                if not isinstance(exc, TimeoutError)
                else (f"no listing within {self.config.timeout_seconds:g} s")
            )
            if self.listing is not None or self.error != error:
                log.warning(
                    "mcp_server_unavailable", persona=self.persona, server=self.name, error=error
                )
            self.listing, self.error = None, error
            return
        was_listed = self.listing is not None
        self.listing = tuple(listed)
        if not was_listed:
            log.info(
                "mcp_server_listed",
                persona=self.persona,
                server=self.name,
                tools=[t.name for t in self.listing],
            )

    def offered(self) -> list[mcp.types.Tool]:
        """The listed tools calls may offer: the allow-list's (all without one), by valid name."""
        wanted = self.config.tools
        return [
            t
            for t in self.listing or ()
            if FUNCTION_NAME.match(t.name) and (wanted is None or t.name in wanted)
        ]

    def missing(self) -> list[str]:
        """Allow-listed names the server does not list (for `tool_unavailable`)."""
        listed = {t.name for t in self.listing or ()}
        return [n for n in self.config.tools or () if n not in listed]

    def tool(self, spec: mcp.types.Tool) -> Tool:
        """A listed tool as a call's `Tool`: run through this server, with its timeout."""
        name = spec.name
        schema = spec.input_schema if spec.input_schema else _EMPTY_OBJECT

        async def run(args: dict[str, Any], env: ToolEnv) -> ToolResult:
            return await self.call(name, args)

        return Tool(
            name=name,
            description=(spec.description or spec.title or name)[:1024],
            parameters=dict(schema),
            run=run,
            timeout_s=self.config.timeout_seconds,
            filler=self.config.filler,
        )

    async def call(self, name: str, args: dict[str, Any]) -> ToolResult:
        """Call `name` with `args`; an unreachable server is an error output (and a refresh)."""
        try:
            async with self._session() as client:
                result = await client.call_tool(name, args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.wake.set()
            cause = describe(_root_cause(exc))
            return ToolResult.failure(f"{name} failed: MCP server {self.name}: {cause}")
        text = output_text(result)
        if result.is_error:
            return ToolResult.failure(f"{name} failed: {' '.join(text.split())[:500]}")
        return ToolResult(text)

    async def aclose(self) -> None:
        await self._http.aclose()
