"""The business's own tools in a persona: HTTP tools (`tools.NAME: {type: http, …}`) and MCP
servers (`mcp_servers.NAME`), checked when the file loads.

Everything that can be known before a call is checked here, with the line of the field at
fault: the URL (https, or plain http to a loopback host only: a tool's request carries the
caller's words and the business's credentials), the arguments' JSON Schema, and the `${VAR}`
references in headers, resolved from the environment at load time so an unset variable stops
start-up instead of failing a call. The resolved values are secrets (`secrets`): the server
registers them with the log scrubber, and the models keep the headers as written, so a
persona printed or dumped shows `${CRM_TOKEN}`, never the token.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jsonschema
from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.persona.base import Section
from bridge.persona.errors import field_error
from bridge.persona.templates import Template

__all__ = [
    "FUNCTION_NAME",
    "HttpTool",
    "McpServer",
    "check_url",
    "resolve",
]

FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What the Realtime API accepts as a function's name."""
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_BRIDGE_HEADERS = frozenset({"content-type", "content-length", "host", "x-voicebridge-signature"})
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str | None:
    """Why `url` may not receive a tool's requests, or None when it may."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{url!r} is not an https URL"
    if parts.username is not None or parts.password is not None:
        return "no credentials in the URL; put them in headers (with ${VAR})"
    if parts.fragment:
        return "no #fragment in the URL"
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return (
            "plain http only to a loopback host (127.0.0.1, ::1, localhost), "
            f"not {parts.hostname!r}; use https"
        )
    return None


def resolve(text: str, env: Mapping[str, str]) -> tuple[str, tuple[str, ...], str | None]:
    """`text` with each `${VAR}` replaced from `env`: (resolved, the values put in, the first
    variable that is not set, or None)."""
    values: list[str] = []
    missing: list[str] = []

    def put(match: re.Match[str]) -> str:
        value = env.get(match[1])
        if value is None:
            missing.append(match[1])
            return ""
        values.append(value)
        return value

    out = _VAR.sub(put, text)
    return out, tuple(values), (missing[0] if missing else None)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class _Remote(Section):
    """What an HTTP tool and an MCP server share: a URL, headers with `${VAR}`, a timeout
    and a filler. `resolved_headers` and `secrets` are filled in when the model validates."""

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    filler: Template | None = None

    _resolved: dict[str, str] = PrivateAttr(default_factory=dict)
    _secrets: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        problem = check_url(value)
        if problem is not None:
            raise field_error(problem)
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise field_error(f"{name!r} is not an HTTP header name", name)
            if name.lower() in _BRIDGE_HEADERS:
                raise field_error(f"{name} is set by the bridge", name)
            if any(c in text for c in "\r\n\0"):
                raise field_error("a header value is one line", name)
        return value

    @model_validator(mode="after")
    def _resolve_headers(self, info: ValidationInfo) -> _Remote:
        # The loader passes the environment in the context; a model built in code reads ours.
        context = info.context if isinstance(info.context, Mapping) else {}
        env: Mapping[str, str] = context.get("env", os.environ)
        resolved: dict[str, str] = {}
        secrets: list[str] = []
        for name, text in self.headers.items():
            value, used, missing = resolve(text, env)
            if missing is not None:
                raise field_error(f"${{{missing}}} is not set in the environment", "headers", name)
            resolved[name] = value
            secrets += used
        self._resolved = resolved
        self._secrets = tuple(s for s in secrets if s)
        return self

    @property
    def resolved_headers(self) -> dict[str, str]:
        """The headers to send, `${VAR}` filled in (secret values: never log them)."""
        return dict(self._resolved)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values `${VAR}`s resolved to, for the log scrubber."""
        return self._secrets


class HttpTool(_Remote):
    """A tool of the business's own, reached over HTTP. The model sees `description` and
    `parameters` (an object JSON Schema its arguments are checked against before any request)."""

    type: Literal["http"]
    description: str = Field(min_length=1, max_length=1024)
    parameters: dict[str, Any] = Field(default_factory=lambda: dict(_EMPTY_OBJECT))
    method: Annotated[Literal["POST", "GET"], BeforeValidator(_upper)] = "POST"

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise field_error(
                "the arguments' schema must be an object schema (`type: object`)", "type"
            )
        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            path = [str(p) for p in exc.absolute_path]
            raise field_error(f"not a valid JSON Schema: {exc.message}", *path) from None
        return value


class McpServer(_Remote):
    """An MCP server (streamable HTTP) whose tools calls offer; `tools` is an allow-list of
    the server's tool names (all of them when left out)."""

    timeout_seconds: float = Field(default=8.0, gt=0, le=60)
    tools: tuple[str, ...] | None = None

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for i, name in enumerate(value or ()):
            if not FUNCTION_NAME.match(name):
                raise field_error(
                    f"{name!r} is not a tool name: letters, digits, '_', '-' (max 64)", i
                )
        return value


def server_names(value: dict[str, McpServer]) -> dict[str, McpServer]:
    """`mcp_servers` keys name the server in logs (`mcp_server_unavailable`)."""
    for key in value:
        if not _SERVER_NAME.match(key):
            raise field_error(
                f"{key!r} is not a server name: letters, digits, '_', '-' (max 64)", key
            )
    return value
