"""When to try again, and when to give up, after the upstream session is lost.

Pure: the adapter asks `step(now)` and awaits what it says (an attempt bounded by the time
left, or a pause); it reports a failed attempt with `failed()`. Within the window the
attempts follow each other with a short pause; past it the call falls back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Attempt:
    """Open a new session, giving up on this attempt after `timeout_s`."""

    number: int
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    attempts: int


ReconnectStep = Attempt | Pause | GiveUp


@dataclass(slots=True)
class ReconnectPlan:
    """One outage: lost at `lost_at`, replaced within `window_s` or not at all."""

    lost_at: float
    window_s: float
    pause_s: float
    renewal: bool = False
    """The bridge closed the session itself (renewal): not an outage to warn about."""
    attempts: int = 0
    _pause_next: bool = False

    def step(self, now: float) -> ReconnectStep:
        remaining = self.lost_at + self.window_s - now
        if remaining <= 0:
            return GiveUp(self.attempts)
        if self._pause_next:
            self._pause_next = False
            return Pause(min(self.pause_s, remaining))
        self.attempts += 1
        return Attempt(self.attempts, remaining)

    def failed(self) -> None:
        self._pause_next = True
