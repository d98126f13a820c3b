"""`end_call`: the agent hangs up once the conversation is over, after its goodbye.

Like a transfer, the tool itself only returns a `Handoff`: the runner says the persona's
goodbye, waits until the caller has heard it, then completes the call over Twilio REST.
Without Twilio credentials (local mode) the media stream is simply closed.
"""

from __future__ import annotations

from typing import Any

from bridge.persona import EndCallTool, Persona
from bridge.settings import Settings
from bridge.tools.base import Handoff, Tool, ToolEnv, ToolResult

__all__ = ["NAME", "build", "handoff", "unavailable"]

NAME = "end_call"
TIMEOUT_S = 5.0
REASON = "agent_hangup"
"""The `call_ended` reason of a call the agent ended."""
DESCRIPTION = (
    "End the phone call. Use it when the caller has what they need or says goodbye. A "
    "goodbye is spoken for you before the line is closed; do not say goodbye yourself."
)
PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def unavailable(settings: Settings) -> str | None:
    """Always offered: without Twilio REST the bridge still ends the call by closing the stream."""
    return None


def handoff(persona: Persona, env: ToolEnv, origin: str = "model") -> Handoff:
    """The hang-up, with the persona's goodbye as the last words."""
    config = persona.tools.end_call or EndCallTool()
    return Handoff(
        kind="hangup",
        line=env.render(config.filler),
        reason=REASON,
        origin="keypad" if origin == "keypad" else "model",
    )


def build(persona: Persona, settings: Settings) -> Tool:
    async def run(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        return ToolResult.of(
            {"ok": True, "status": "ending the call"},
            respond=False,
            handoff=handoff(persona, env),
        )

    return Tool(NAME, DESCRIPTION, PARAMETERS, run, TIMEOUT_S)
