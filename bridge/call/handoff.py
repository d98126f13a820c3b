"""Call control's stages: a transfer or hang-up lets its line play out before it acts.

One `HandoffProgress` per call at most: `waiting` (for the model to be silent) → the line is
asked for → `speaking` (until the caller has heard it to the end) → `acting` (the adapter asks
Twilio) → the call ends, or, for a transfer that failed, goes on. A handoff the model chose is
called off when the caller talks over its line; one the caller chose on the keypad, or a
limit, is not. Past `HANDOFF_MAX_WAIT_S` it acts anyway: a stuck upstream must not keep a
caller from the person they asked for. Pure: the core holds it and passes the time in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.tools.base import Handoff

Stage = Literal["waiting", "speaking", "acting"]


@dataclass(slots=True)
class HandoffProgress:
    handoff: Handoff
    started: float
    stage: Stage = "waiting"
    items_before: frozenset[str] = frozenset()
    """The agent items that existed when the line was asked for: any later one that the
    caller interrupted was the line (or what replaced it)."""

    def overdue(self, now: float, max_wait_s: float) -> bool:
        return self.stage != "acting" and now - self.started >= max_wait_s

    @property
    def cancellable(self) -> bool:
        """Whether the caller talking over the line calls it off."""
        return self.handoff.origin == "model"
