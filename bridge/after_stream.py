"""What a call does once its media stream has ended: the answer to `<Connect action>`.

When the stream's socket closes, Twilio requests the `<Connect>`'s action URL (signed like
the webhook) and runs the TwiML it gets; without an action it would run whatever follows
`</Connect>` (twilio.com/docs/voice/twiml/connect, "action"). So the bridge does not write
its apology after `</Connect>`, where a call ended on purpose would hear it too: each stream
leaves its outcome here as it ends, and the action's answer follows it. A hang-up the call
chose, or a caller who hung up, gets `<Hangup/>`; a transfer gets its `<Dial>` (so a transfer
works without Twilio REST credentials); only an agent that failed (upstream down, bridge
restarting) or a call this process does not know gets the persona's fallback.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Hangup:
    """The call ended on purpose (the agent, a limit, the keypad, the caller)."""


@dataclass(frozen=True, slots=True)
class Transfer:
    target: str
    number: str


@dataclass(frozen=True, slots=True)
class Fallback:
    """The agent failed the caller: the persona's apology, then its fallback transfer."""


AfterStream = Hangup | Transfer | Fallback


@dataclass(frozen=True, slots=True)
class TransferNotAnswered:
    """A transfer's `<Dial>` ended unanswered (or busy, or failed): the caller comes back to
    the agent on a new stream of the same call, and the agent is told."""

    target: str
    status: str  # Twilio's DialCallStatus: no-answer, busy, failed, canceled

    def opening(self) -> str:
        """The new stream's first instructions to the model, instead of the greeting."""
        return (
            f"You tried to transfer the caller to {self.target}, but the transfer was not "
            f"answered ({self.status.replace('-', ' ')}). The caller is back on the line with "
            "you: tell them briefly, apologise, and offer to help another way or take a "
            "message."
        )


DELIBERATE = frozenset({"agent_hangup", "max_duration", "idle", "caller_hangup"})
"""End reasons that are not a failure of the agent: the call is over when the stream is."""

OUTCOME_TTL_S = 600.0
"""Twilio asks for the action within seconds of the stream's end; an outcome nobody asked
for is forgotten after this."""
MAX_OUTCOMES = 10_000


class CallFacts(Generic[T]):
    """One fact per CallSid (how its stream ended, a transfer that was not answered) until
    the request that needs it takes it. Bounded in count and age, so facts nobody asks for
    cannot grow it."""

    def __init__(self, ttl_s: float = OUTCOME_TTL_S, max_entries: int = MAX_OUTCOMES) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._outcomes: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def record(self, call_sid: str, outcome: T, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._outcomes.pop(call_sid, None)
        self._outcomes[call_sid] = (now + self._ttl_s, outcome)
        self._expire(now)
        while len(self._outcomes) > self._max:
            self._outcomes.popitem(last=False)

    def take(self, call_sid: str, now: float | None = None) -> T | None:
        """The call's fact, once; None when this process does not know the call (another
        replica's, or before a restart)."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        entry = self._outcomes.pop(call_sid, None)
        return entry[1] if entry is not None else None

    def __len__(self) -> int:
        return len(self._outcomes)

    def _expire(self, now: float) -> None:
        while self._outcomes:
            call_sid, (expires_at, _) = next(iter(self._outcomes.items()))
            if expires_at > now:
                break
            del self._outcomes[call_sid]


StreamOutcomes = CallFacts[AfterStream]
"""How each ended stream wants its call to go on, for the `<Connect>` action."""
