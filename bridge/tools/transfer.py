"""`transfer_call`: hand the caller to a person, only ever to a number the persona lists.

The model names a target (an enum of the persona's `transfer_targets` in the schema); the
number stays on this side, so no prompt can make the agent dial anywhere else. The tool only
checks the name and returns a `Handoff`: the runner says the handoff line, waits until the
caller has heard it, then redirects the live call to `<Dial>` TwiML over Twilio REST.
"""

from __future__ import annotations

from typing import Any

from bridge.persona import Persona, TransferCallTool
from bridge.settings import Settings
from bridge.tools.base import Handoff, Tool, ToolEnv, ToolResult

__all__ = ["NAME", "build", "handoff", "unavailable"]

NAME = "transfer_call"
TIMEOUT_S = 5.0
REASON = "transferred"
"""The `call_ended` reason of a transferred call."""


def unavailable(settings: Settings) -> str | None:
    """Always offered: with Twilio REST the call is redirected to the `<Dial>`; without it
    (or when REST fails) the stream ends and the `<Connect>` action answers with it."""
    return None


def handoff(persona: Persona, target: str, env: ToolEnv, origin: str = "model") -> Handoff:
    """The transfer to `target` (a name in `persona.transfer_targets`), with its spoken line."""
    config = persona.tools.transfer_call or TransferCallTool()
    return Handoff(
        kind="transfer",
        line=env.render(config.filler),
        reason=REASON,
        target=target,
        number=persona.transfer_targets[target].number,
        origin="keypad" if origin == "keypad" else "model",
    )


def build(persona: Persona, settings: Settings) -> Tool:
    targets = persona.transfer_targets
    choices = "; ".join(
        f"{name}: {target.description}" if target.description else name
        for name, target in targets.items()
    )
    description = (
        "Transfer the caller to a person. Use it when the caller asks for someone or needs "
        "what you cannot do. A short handoff line is spoken for you and the call is then "
        f"connected; do not say goodbye yourself. Targets: {choices}."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "target": {
                "type": "string",
                "enum": list(targets),
                "description": "Who to transfer to, by name.",
            }
        },
        "required": ["target"],
        "additionalProperties": False,
    }

    async def run(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        target = args.get("target")
        if not isinstance(target, str) or target not in targets:
            return ToolResult.failure(
                f"unknown transfer target {target!r}; choose one of: {', '.join(targets)}"
            )
        return ToolResult.of(
            {"ok": True, "status": "transferring", "target": target},
            respond=False,
            handoff=handoff(persona, target, env),
        )

    return Tool(NAME, description, parameters, run, TIMEOUT_S)
