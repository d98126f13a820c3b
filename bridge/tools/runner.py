"""Runs one function call with its tool: find it, bound it by its timeout, tell when it is slow.

The call core decides what a result means (`Call.tool_finished`: answer the model, start a
handoff, log the `tool_call` line); the adapter runs each function call as a task beside the
audio, so the pumps never wait for a tool. This module is the part in between that only the
tools know: the lookup, the timeout, the filler delay, and turning a timeout or an exception
into an error result the model can talk about.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from bridge.errors import describe
from bridge.logs import get_logger
from bridge.tools.base import Tool, ToolEnv, ToolResult

log = get_logger("voicebridge.tools")

FILLER_AFTER_S = 1.0
"""A tool still running after this long gets its filler line spoken."""


class ToolRunner:
    """One call's tools. `on_slow` callbacks get the tool's filler line, rendered for the call."""

    def __init__(
        self, tools: Mapping[str, Tool], env: ToolEnv, *, filler_after_s: float = FILLER_AFTER_S
    ) -> None:
        self.tools = dict(tools)
        self.env = env
        self.filler_after_s = filler_after_s

    async def run(
        self,
        name: str,
        args: dict[str, Any] | None,
        problem: str | None,
        on_slow: Callable[[str], None],
    ) -> ToolResult:
        """The result of calling `name` with `args` (None: the arguments were unreadable, for
        the reason `problem`). Never raises but for cancellation."""
        tool = self.tools.get(name)
        if tool is None:
            return ToolResult.failure(f"unknown tool {name!r}")
        if args is None:
            return ToolResult.failure(problem or "arguments are not a JSON object")
        inner = asyncio.ensure_future(self._bounded(tool, args))
        try:
            if tool.filler and self.filler_after_s < tool.timeout_s:
                done, _ = await asyncio.wait({inner}, timeout=self.filler_after_s)
                if not done:
                    on_slow(self.env.render(tool.filler))
            return await inner
        except TimeoutError:
            return ToolResult.failure(f"{tool.name} timed out after {tool.timeout_s:g} s")
        except Exception as exc:
            return ToolResult.failure(f"{tool.name} failed: {describe(exc)}")
        finally:
            if not inner.done():
                inner.cancel()
                await asyncio.gather(inner, return_exceptions=True)

    async def _bounded(self, tool: Tool, args: dict[str, Any]) -> ToolResult:
        async with asyncio.timeout(tool.timeout_s):
            return await tool.run(args, self.env)

    async def aclose(self) -> None:
        """Release what the tools hold for the call (HTTP clients)."""
        for tool in self.tools.values():
            if tool.close is not None:
                try:
                    await tool.close()
                except Exception as exc:
                    log.warning("tool_close_failed", name=tool.name, error=describe(exc))


def parse_arguments(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The model's arguments as a dict, or None and why; empty text means none (some models
    send "")."""
    if not text or not text.strip():
        return {}, None
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, "arguments must be a JSON object"
    return value, None
