"""HTTP tools: a persona's own tool (`tools.NAME: {type: http, url, …}`) is one signed
request to the business's endpoint per function call.

The model's arguments are checked against the tool's JSON Schema first: arguments that do not
fit get an error output the model can talk about, and no request leaves. A POST carries
`{"tool", "arguments", "call": {"call_sid", "from", "to", "persona"}}` as JSON; a GET the
arguments as query parameters. The URL's host and path are the persona's, never the model's.
Every request is signed (`bridge.signing`, header `X-Voicebridge-Signature`, over the body,
or over the query string of a GET) under `WEBHOOK_SIGNING_SECRET`, so the receiver knows it
is ours; without that secret HTTP tools are not offered at all.

A 2xx answer is the function output (JSON as is, text as text, cut at `MAX_OUTPUT_BYTES`);
any other status, a timeout or a connection error is an error output, and the call goes on.
Requests go through the process's one `httpx.AsyncClient` (the catalogue's): building a client
builds a TLS context (20-40 ms of CPU on the event loop), and keep-alive connections to the
business's endpoint are reused by every call. Without one (a tool built outside the server),
the tool opens a client of its own on first use and closes it with the call.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import certifi
import httpx
import jsonschema

from bridge.persona import HttpTool
from bridge.settings import Settings
from bridge.signing import HEADER, sign
from bridge.tools.base import Tool, ToolEnv, ToolResult

__all__ = [
    "MAX_OUTPUT_BYTES",
    "HttpToolCall",
    "build",
    "new_client",
    "query_value",
    "unavailable",
]

MAX_OUTPUT_BYTES = 16 * 1024
"""The most of an answer the model reads; the rest is cut (it would fill the model's context
and slow every later turn of the call)."""
MAX_ERROR_CHARS = 200
"""How much of a failed answer's body the error output quotes."""
_CUT = "…[cut]"

_tls: ssl.SSLContext | None = None


async def tls_context() -> ssl.SSLContext:
    """The process's TLS context for the business's endpoints, built once in a worker thread
    (loading the CA bundle takes tens of ms that must not stall a call's audio)."""
    global _tls
    if _tls is None:
        _tls = await asyncio.to_thread(ssl.create_default_context, cafile=certifi.where())
    return _tls


async def new_client() -> httpx.AsyncClient:
    """A client for HTTP tools: redirects are not followed (a 3xx is an error output, so the
    request never goes where the persona did not say)."""
    return httpx.AsyncClient(verify=await tls_context(), follow_redirects=False)


def unavailable(settings: Settings) -> str | None:
    """Why HTTP tools cannot be offered, or None when they can."""
    if settings.WEBHOOK_SIGNING_SECRET is None:
        return "WEBHOOK_SIGNING_SECRET is not set (every request to the business is signed)"
    return None


def build(
    name: str, config: HttpTool, settings: Settings, client: httpx.AsyncClient | None = None
) -> Tool:
    """The tool for one call; `client` is the process's shared one (else the tool opens its
    own on first use)."""
    call = HttpToolCall(name, config, settings, client)
    return Tool(
        name=name,
        description=config.description,
        parameters=config.parameters,
        run=call.run,
        timeout_s=config.timeout_seconds,
        filler=config.filler,
        close=call.aclose,
    )


def query_value(value: object) -> str:
    """An argument as a query parameter: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _cut(data: bytes, limit: int) -> str:
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace")
    return data[:limit].decode("utf-8", errors="ignore") + _CUT


class HttpToolCall:
    """One call's HTTP tool: the schema check, the signed request, the answer as output."""

    def __init__(
        self,
        name: str,
        config: HttpTool,
        settings: Settings,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if settings.WEBHOOK_SIGNING_SECRET is None:
            raise ValueError("HTTP tools need WEBHOOK_SIGNING_SECRET")
        self.name = name
        self.config = config
        self._secret = settings.WEBHOOK_SIGNING_SECRET.get_secret_value()
        self._validator = jsonschema.Draft202012Validator(config.parameters)
        self._shared = client
        self._own: httpx.AsyncClient | None = None

    def problem(self, args: dict[str, Any]) -> str | None:
        """Why `args` do not fit the tool's schema (the first reason), or None."""
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(args))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"invalid arguments{f' at {where}' if where else ''}: {error.message}"

    def request(self, args: dict[str, Any], env: ToolEnv, now: float) -> httpx.Request:
        """The signed request for `args` (a pure function of its inputs but the client)."""
        headers = self.config.resolved_headers
        if self.config.method == "GET":
            parts = urlsplit(self.config.url)
            extra = urlencode([(k, query_value(v)) for k, v in args.items()])
            query = "&".join(q for q in (parts.query, extra) if q)
            url = httpx.URL(urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")))
            # Signed as sent: the query string exactly as it goes on the request line.
            headers[HEADER] = sign(self._secret, url.query, now)
            return httpx.Request("GET", url, headers=headers)
        body = json.dumps(
            {
                "tool": self.name,
                "arguments": args,
                "call": {
                    "call_sid": env.call_sid,
                    "from": env.caller_number,
                    "to": env.called_number,
                    "persona": env.persona.name,
                },
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        headers["Content-Type"] = "application/json"
        headers[HEADER] = sign(self._secret, body, now)
        return httpx.Request("POST", httpx.URL(self.config.url), headers=headers, content=body)

    async def _client(self) -> httpx.AsyncClient:
        if self._shared is not None:
            return self._shared
        if self._own is None:
            self._own = await new_client()
        return self._own

    async def run(self, args: dict[str, Any], env: ToolEnv) -> ToolResult:
        problem = self.problem(args)
        if problem is not None:
            return ToolResult.failure(f"{self.name}: {problem}")
        client = await self._client()
        request = self.request(args, env, time.time())
        timeout = self.config.timeout_seconds
        request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        try:
            response = await client.send(request, stream=True)
            try:
                data = await self._read(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            return ToolResult.failure(f"{self.name} timed out after {timeout:g} s")
        except httpx.HTTPError as exc:
            return ToolResult.failure(f"{self.name} failed: {type(exc).__name__}")
        if not 200 <= response.status_code < 300:
            text = " ".join(_cut(data, MAX_ERROR_CHARS).split())
            return ToolResult.failure(
                f"{self.name} failed: HTTP {response.status_code}{f': {text}' if text else ''}"
            )
        if not data.strip():
            return ToolResult.of({"ok": True})
        return ToolResult(_cut(data, MAX_OUTPUT_BYTES))

    @staticmethod
    async def _read(response: httpx.Response) -> bytes:
        """The body, up to one byte past the cap: the rest is never read."""
        out = bytearray()
        async for chunk in response.aiter_bytes():
            out += chunk
            if len(out) > MAX_OUTPUT_BYTES:
                break
        return bytes(out)

    async def aclose(self) -> None:
        own, self._own = self._own, None
        if own is not None:
            await own.aclose()
