"""What a keypad press does: the persona's menu action, or a short message to the model.

Pure decisions; the runner carries them out. A digit the menu maps to `transfer` or
`end_call` becomes the same `Handoff` the model's tools produce (the line plays out before
Twilio is told), but one the caller chose: talking over its line does not call it off.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.persona import Persona
from bridge.tools import end_call, transfer
from bridge.tools.base import Handoff, ToolEnv

__all__ = ["DtmfOutcome", "SayLine", "ToModel", "decide", "to_model_text"]

_KEY_NAMES = {"*": "star (*)", "#": "pound (#)"}


@dataclass(frozen=True, slots=True)
class ToModel:
    """Tell the model, as a user message, which key was pressed; it decides what it means."""

    text: str


@dataclass(frozen=True, slots=True)
class SayLine:
    """The agent says this text (already rendered for the call)."""

    text: str


DtmfOutcome = ToModel | SayLine | Handoff


def to_model_text(digit: str) -> str:
    return f"The caller pressed {_KEY_NAMES.get(digit, digit)} on the keypad."


def decide(persona: Persona, digit: str, env: ToolEnv) -> DtmfOutcome | None:
    """What pressing `digit` does on this call; None means the press is ignored.

    A menu transfer works with or without Twilio credentials (without them, the stream's
    end carries it out through the `<Connect>` action).
    """
    action = persona.dtmf_action(digit)
    if action is None:
        return None
    if action.action == "say" and action.text:
        return SayLine(env.render(action.text))
    if action.action == "end_call":
        return end_call.handoff(persona, env, origin="keypad")
    if action.action == "transfer" and action.target:
        return transfer.handoff(persona, action.target, env, origin="keypad")
    return ToModel(to_model_text(digit))
