"""The small types every tool shares, and nothing else: tool modules import only this.

A tool is data plus one coroutine: a name, a description and a JSON schema (what the model
sees), an async implementation, a timeout and an optional filler line for when it is slow.
Call control (transfer, hang-up) is not done inside a tool: the tool only validates and
returns a `Handoff`, and the runner carries it out once the last words have played.

Which tools a call offers is the catalogue's business (`bridge.tools.catalogue`), which
imports the tool modules; keeping the types here is what lets both import at the top.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.persona import Persona
from bridge.realtime.events import FunctionTool
from bridge.settings import Settings

__all__ = [
    "Handoff",
    "Tool",
    "ToolEnv",
    "ToolFactory",
    "ToolImpl",
    "ToolResult",
    "speak_exactly",
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


ToolFactory = Callable[[Persona, Settings], Tool]
"""Builds a tool for one call from its persona's settings (each tool module's `build`)."""
