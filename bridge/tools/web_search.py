"""`web_search`: look something up with Tavily while the caller waits on the line.

The model reads the result into a phone call, so it gets little: Tavily's short answer if
there is one, then each result's title, URL and snippet, cut to the persona's `max_chars`.
A page of search results would fill the model's context and slow every later turn.

One `AsyncTavilyClient` per call, on an httpx client that reuses one TLS context per process:
building a TLS context (loading the CA bundle) takes 20-40 ms, which must not happen on the
event loop in the middle of a call, so it is built once, in a worker thread, at start-up
(`prepare`). The first search of a process would also import what httpx loads lazily: httpcore
and h11 when the client is built, anyio's asyncio backend at the first connection. That is
25-30 ms of imports on the event loop, a gap in every call's audio; they happen at start-up too.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any

import anyio.lowlevel
import certifi
import httpcore  # noqa: F401  (httpx imports it when the first client is built; here, at start-up)
import httpx
from tavily import AsyncTavilyClient

from bridge.persona import Persona, WebSearchTool
from bridge.settings import Settings
from bridge.tools.base import Tool, ToolEnv, ToolResult

__all__ = ["NAME", "WebSearch", "build", "compact", "unavailable"]

NAME = "web_search"
DESCRIPTION = (
    "Search the web for current facts you are not sure of (opening times, product details, "
    "news, outages). Returns a short answer and a few sources; tell the caller what you found "
    "in a sentence or two and never read out links."
)
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {
            "type": "string",
            "description": "A short web search query, e.g. 'Northwind R7 router firmware'.",
        }
    },
    "required": ["query"],
    "additionalProperties": False,
}
MAX_QUERY_CHARS = 400
"""Tavily rejects very long queries; a spoken question never needs more."""
_ELLIPSIS = "…"

_tls: ssl.SSLContext | None = None


async def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = await asyncio.to_thread(ssl.create_default_context, cafile=certifi.where())
    return _tls


async def prepare() -> None:
    """At start-up, before any call: the TLS context (in a worker thread) and anyio's asyncio
    backend, which anyio imports on first use, here with no call on the line."""
    await _tls_context()
    await anyio.lowlevel.checkpoint()


def unavailable(settings: Settings) -> str | None:
    """Why web_search cannot be offered, or None when it can."""
    if settings.TAVILY_API_KEY is None:
        return "TAVILY_API_KEY is not set"
    return None


def build(persona: Persona, settings: Settings) -> Tool:
    config = persona.tools.web_search or WebSearchTool()
    search = WebSearch(config, settings)
    return Tool(
        name=NAME,
        description=DESCRIPTION,
        parameters=PARAMETERS,
        run=search.run,
        timeout_s=config.timeout_seconds,
        filler=config.filler,
        close=search.aclose,
    )


class WebSearch:
    """The web_search tool of one call: its Tavily client, opened on first use."""

    def __init__(self, config: WebSearchTool, settings: Settings) -> None:
        if settings.TAVILY_API_KEY is None:
            raise ValueError("web_search needs TAVILY_API_KEY")
        self.config = config
        self._api_key = settings.TAVILY_API_KEY.get_secret_value()
        self._base_url = settings.TAVILY_API_BASE_URL
        self._http: httpx.AsyncClient | None = None
        self._client: AsyncTavilyClient | None = None

    async def _tavily(self) -> AsyncTavilyClient:
        if self._client is None:
            self._http = httpx.AsyncClient(verify=await _tls_context())
            # With an httpx client of ours, tavily-python sets its headers and, from
            # `api_base_url`, the base URL on it; the client stays ours to close.
            self._client = AsyncTavilyClient(
                api_key=self._api_key, api_base_url=self._base_url, client=self._http
            )
        return self._client

    async def run(self, args: dict[str, Any], env: ToolEnv) -> ToolResult:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            return ToolResult.failure("web_search needs a non-empty 'query' string")
        query = " ".join(query.split())[:MAX_QUERY_CHARS]
        client = await self._tavily()
        response = await client.search(
            query,
            search_depth="basic",
            max_results=self.config.max_results,
            include_answer=True,
            timeout=self.config.timeout_seconds,
        )
        return ToolResult(compact(response, self.config.max_chars, query))

    async def aclose(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.aclose()


def _clean(text: object) -> str:
    """One line of plain text: snippets come with newlines, tabs and runs of spaces."""
    return re.sub(r"\s+", " ", str(text or "")).strip()


def _cut(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    if budget <= len(_ELLIPSIS):
        return ""
    return text[: budget - len(_ELLIPSIS)].rstrip() + _ELLIPSIS


def compact(response: dict[str, Any], max_chars: int, query: str = "") -> str:
    """Tavily's answer, then each result as title, URL and snippet, in at most `max_chars`.

    Whole results are kept while they fit; the first one that does not is cut inside its
    snippet (never inside its title or URL), and the rest are dropped.
    """
    parts: list[str] = []
    used = 0

    def add(text: str) -> bool:
        nonlocal used
        separator = 2 if parts else 0  # the blank line between parts
        if used + separator + len(text) > max_chars:
            return False
        parts.append(text)
        used += separator + len(text)
        return True

    answer = _clean(response.get("answer"))
    if answer:
        add(_cut(f"Answer: {answer}", max_chars))
    results = response.get("results") or []
    for number, result in enumerate(results, 1):
        if not isinstance(result, dict):
            continue
        title = _clean(result.get("title")) or "Untitled"
        head = f"[{number}] {title}\n{_clean(result.get('url'))}"
        snippet = _clean(result.get("content"))
        if add(f"{head}\n{snippet}" if snippet else head):
            continue
        room = max_chars - used - (2 if parts else 0) - len(head) - 1
        if room > 40:  # a snippet shorter than this says nothing
            add(f"{head}\n{_cut(snippet, room)}")
        break
    if not parts:
        return _cut(f"No results found for {query!r}." if query else "No results found.", max_chars)
    return "\n\n".join(parts)
