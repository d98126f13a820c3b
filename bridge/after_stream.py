"""What a call does once its media stream has ended: the answer to `<Connect action>`.

When the stream's socket closes, Twilio requests the `<Connect>`'s action URL (signed like
the webhook) and runs the TwiML it gets; without an action it would run whatever follows
`</Connect>` (twilio.com/docs/voice/twiml/connect, "action"). So the bridge does not write
its apology after `</Connect>`, where a call ended on purpose would hear it too: each stream
leaves its outcome here as it ends, and the action's answer follows it. A hang-up the call
chose, or a caller who hung up, gets `<Hangup/>`; a transfer gets its `<Dial>` (so a transfer
works without Twilio REST credentials); only an agent that failed (upstream down, bridge
restarting) or a call the deployment does not know gets the persona's fallback (the outcomes
are in the shared state, `bridge.shared`, so the action may reach any worker or replica).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from bridge.errors import describe
from bridge.logs import get_logger
from bridge.shared.store import SharedStore

T = TypeVar("T")

log = get_logger("voicebridge.after_stream")


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


DELIBERATE = frozenset(
    {"agent_hangup", "max_duration", "idle", "caller_hangup", "voicemail", "machine"}
)
"""End reasons that are not a failure of the agent: the call is over when the stream is."""

OUTCOME_TTL_S = 600.0
"""Twilio asks for the action within seconds of the stream's end; an outcome nobody asked
for is forgotten after this."""


class CallFacts(Generic[T]):
    """One fact per CallSid (how its stream ended, a transfer that was not answered) until
    the request that needs it takes it, which may reach another worker or replica: kept in
    the deployment's shared store (`bridge.shared`) as JSON, each with an expiry, so facts
    nobody asks for cannot pile up."""

    def __init__(
        self,
        kind: str,
        store: SharedStore,
        encode: Callable[[T], Any],
        decode: Callable[[Any], T],
        ttl_s: float = OUTCOME_TTL_S,
    ) -> None:
        self.kind = kind
        self._store = store
        self._encode, self._decode = encode, decode
        self._ttl_s = ttl_s

    def _key(self, call_sid: str) -> str:
        return f"fact:{self.kind}:{call_sid}"

    async def record(self, call_sid: str, fact: T) -> None:
        await self._store.put(self._key(call_sid), orjson.dumps(self._encode(fact)), self._ttl_s)

    async def take(self, call_sid: str) -> T | None:
        """The call's fact, once; None when nobody left one (an unknown call, or one from
        before a restart of a store kept in memory)."""
        raw = await self._store.take(self._key(call_sid))
        if raw is None:
            return None
        try:
            return self._decode(orjson.loads(raw))
        except (ValueError, TypeError, KeyError) as exc:  # another version's shape
            log.warning("shared_fact_unreadable", kind=self.kind, error=describe(exc))
            return None


def encode_after_stream(outcome: AfterStream) -> dict[str, str]:
    if isinstance(outcome, Transfer):
        return {"then": "transfer", "target": outcome.target, "number": outcome.number}
    return {"then": "hangup" if isinstance(outcome, Hangup) else "fallback"}


def decode_after_stream(data: dict[str, str]) -> AfterStream:
    then = data["then"]
    if then == "transfer":
        return Transfer(str(data["target"]), str(data["number"]))
    if then == "hangup":
        return Hangup()
    if then == "fallback":
        return Fallback()
    raise ValueError(f"unknown outcome {then!r}")


def encode_not_answered(fact: TransferNotAnswered) -> dict[str, str]:
    return {"target": fact.target, "status": fact.status}


def decode_not_answered(data: dict[str, str]) -> TransferNotAnswered:
    return TransferNotAnswered(str(data["target"]), str(data["status"]))


def stream_outcomes(store: SharedStore) -> CallFacts[AfterStream]:
    return CallFacts("outcome", store, encode_after_stream, decode_after_stream)


def transfer_resumes(store: SharedStore) -> CallFacts[TransferNotAnswered]:
    return CallFacts("resume", store, encode_not_answered, decode_not_answered)


StreamOutcomes = CallFacts[AfterStream]
"""How each ended stream wants its call to go on, for the `<Connect>` action."""
