"""Call length, idleness and session age: what is due at a given moment, decided purely.

The core asks `LimitWatch.check` on every tick with the facts of the moment; the answer is at
most one thing to do. At the length limit the persona's goodbye is spoken, then the call is
hung up. When neither side has done anything for the idle time, the persona's reprompt is
spoken once; if the caller still says nothing for another idle period, a short goodbye and
hang-up. With the server's own idle timeout (GA `idle_timeout_ms`) the server's prompt is the
reprompt, and the bridge's timer only says the goodbye: one idle policy, not two. A session
near the provider's cap is renewed, but only while nobody is speaking.
Once a limit has ended the call, nothing more is due.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.call.rules import CallRules


@dataclass(frozen=True, slots=True)
class EndForLimit:
    """Say `line`, let it play out, hang up; `limit` and `seconds` are for the log line."""

    reason: str
    line: str
    limit: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Reprompt:
    line: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Renew:
    session_age_s: float


LimitDecision = EndForLimit | Reprompt | Renew


@dataclass(slots=True)
class LimitWatch:
    rules: CallRules
    started_at: float
    reprompted_at: float | None = None
    done: bool = False

    def check(
        self,
        now: float,
        *,
        idle: bool,
        last_activity: float,
        last_caller_speech: float | None,
        session_age_s: float | None,
    ) -> LimitDecision | None:
        """What is due now. `idle`: nothing plays, no response or tool is under way;
        `session_age_s`: the live session's age, None when it cannot be renewed now."""
        if self.done:
            return None
        rules = self.rules
        if now - self.started_at >= rules.max_call_s:
            self.done = True
            return EndForLimit("max_duration", rules.goodbye, "max_call_seconds", rules.max_call_s)
        if session_age_s is not None and session_age_s >= rules.session_renew_s and idle:
            return Renew(session_age_s)
        if self.reprompted_at is not None and (last_caller_speech or 0) > self.reprompted_at:
            self.reprompted_at = None  # the caller answered the reprompt
        if not idle or now - last_activity < rules.idle_s:
            return None
        if rules.server_idle and self.reprompted_at is None:
            # The server prompts the caller (`timeout_triggered`); the goodbye waits for it,
            # unless it never comes (twice the idle time).
            if now - last_activity < 2 * rules.idle_s:
                return None
        elif self.reprompted_at is None and rules.idle_reprompt:
            return Reprompt(rules.idle_reprompt, rules.idle_s)
        self.done = True
        return EndForLimit("idle", rules.idle_goodbye, "idle_seconds", rules.idle_s)

    def reprompted(self, now: float) -> None:
        """The reprompt is being said (the model was silent and took it)."""
        self.reprompted_at = now
