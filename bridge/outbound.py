"""Outbound calls, the pure parts: what `POST /calls` accepts, and how many calls go out how fast.

The route (`bridge.outbound_routes`) reads the request and asks Twilio; everything it decides
is here, without I/O and with the time passed in, so each rule is tested with numbers: a
request body becomes a `DialRequest` or a `DialError` with its HTTP status, and
`OutboundLimits` says when a call may be placed (Twilio's pace per number, 1 call a second by
default) or that it must wait (429 and `Retry-After`).
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from bridge.persona import Persona, PersonaBook

__all__ = [
    "ANSWERED_BY",
    "E164",
    "ENDED_UNANSWERED",
    "MAX_CONTEXT_BYTES",
    "MAX_PACE_WAIT_S",
    "DialError",
    "DialRequest",
    "OutboundCall",
    "OutboundLimits",
    "Refused",
    "Slot",
    "parse_dial",
    "with_context",
]

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
"""A phone number as Twilio dials it: `+`, a country code, at most 15 digits."""

MAX_CONTEXT_BYTES = 4096
"""The `context` object, as JSON: it goes into the model's instructions, so it stays short."""

MAX_PACE_WAIT_S = 5.0
"""How long a request may wait for its turn at the pace before it is refused with 429: the
client's HTTP request is held that long at most."""

ENDED_UNANSWERED = frozenset({"no-answer", "busy", "failed", "canceled"})
"""Twilio's final `CallStatus` values of a call nobody answered."""

ANSWERED_BY = frozenset(
    {
        "human",
        "machine_start",
        "machine_end_beep",
        "machine_end_silence",
        "machine_end_other",
        "fax",
        "unknown",
    }
)
"""Twilio's `AnsweredBy` values with `MachineDetection=DetectMessageEnd`."""


class DialError(Exception):
    """A `POST /calls` that cannot be placed, with the HTTP status it is answered with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class DialRequest:
    to: str
    from_: str
    persona: Persona
    context: dict[str, Any] = field(default_factory=dict)


def _number(value: object, name: str) -> str:
    if not isinstance(value, str) or not E164.match(value):
        shown = value if isinstance(value, str) and len(value) <= 32 else type(value).__name__
        raise DialError(422, f"{name}: {shown!r} is not an E.164 phone number (like +12125550100)")
    return value


def parse_dial(body: bytes, book: PersonaBook) -> DialRequest:
    """The call a `POST /calls` body asks for, or `DialError` (400 not a JSON object,
    422 a field wrong, 404 the persona unknown). `from` defaults to the persona's first
    number."""
    try:
        data = json.loads(body)
    except ValueError:
        raise DialError(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise DialError(400, "the body is not a JSON object")
    unknown = sorted(set(data) - {"to", "persona", "from", "context"})
    if unknown:
        raise DialError(422, f"unknown field(s): {', '.join(unknown)}")
    to = _number(data.get("to"), "to")
    name = data.get("persona")
    if name is None:
        persona = book.default
    elif not isinstance(name, str):
        raise DialError(422, "persona: expected a persona name")
    else:
        found = book.get(name)
        if found is None:
            raise DialError(404, f"persona {name[:64]!r} is not loaded")
        persona = found
    if data.get("from") is not None:
        from_ = _number(data["from"], "from")
    elif persona.numbers:
        from_ = persona.numbers[0]
    else:
        raise DialError(
            422, f"from: persona {persona.name!r} has no numbers; give the caller ID in 'from'"
        )
    context = data.get("context") or {}
    if not isinstance(context, dict):
        raise DialError(422, "context: expected a JSON object")
    if len(json.dumps(context, ensure_ascii=False).encode()) > MAX_CONTEXT_BYTES:
        raise DialError(422, f"context: over {MAX_CONTEXT_BYTES} bytes as JSON")
    return DialRequest(to=to, from_=from_, persona=persona, context=context)


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """What the bridge knows of a call it placed, by CallSid, for its stream: never in a
    URL Twilio holds."""

    to: str
    from_: str
    persona: str
    context: dict[str, Any] = field(default_factory=dict)


def encode_outbound(call: OutboundCall) -> dict[str, Any]:
    return {"to": call.to, "from": call.from_, "persona": call.persona, "context": call.context}


def decode_outbound(data: dict[str, Any]) -> OutboundCall:
    context = data.get("context") or {}
    if not isinstance(context, dict):
        raise TypeError("context is not an object")
    return OutboundCall(str(data["to"]), str(data["from"]), str(data["persona"]), context)


def with_context(instructions: str, context: dict[str, Any]) -> str:
    """The session instructions of a call placed with a `context`: the persona's, then the
    facts the business's systems gave, as JSON the model reads."""
    if not context:
        return instructions
    facts = json.dumps(context, ensure_ascii=False, sort_keys=True)
    return (
        f"{instructions}\n\nYou placed this call. What the business's systems say about it "
        f"(JSON): {facts}"
    )


@dataclass(frozen=True, slots=True)
class Slot:
    """A call may go to Twilio at `at` (monotonic seconds); `ticket` names it until it is
    placed (`placed`) or given up (`release`)."""

    ticket: int
    at: float


@dataclass(frozen=True, slots=True)
class Refused:
    """Not now: 429 with `Retry-After: retry_after_s` (whole seconds, at least 1)."""

    reason: str
    retry_after_s: int


class OutboundLimits:
    """At most `max_calls` outbound calls at once, placed at most `per_second` a second.

    A call counts from the request that places it until Twilio reports its end
    (`/call-status`), or until `ttl_s` after it was placed if that report never comes. Each
    admitted request gets the next free slot of the pace, `1 / per_second` after the one
    before; one whose slot is more than `max_wait_s` away is refused rather than held.
    """

    def __init__(
        self,
        max_calls: int,
        per_second: float,
        ttl_s: float,
        max_wait_s: float = MAX_PACE_WAIT_S,
    ) -> None:
        self.max_calls = max_calls
        self.interval_s = 1.0 / per_second
        self.ttl_s = ttl_s
        self.max_wait_s = max_wait_s
        self._next_at = -math.inf
        self._tickets: dict[int, float] = {}  # waiting for their slot or for Twilio's answer
        self._calls: OrderedDict[str, float] = OrderedDict()  # CallSid → expires at
        self._serial = 0

    @property
    def live(self) -> int:
        return len(self._tickets) + len(self._calls)

    def reserve(self, now: float) -> Slot | Refused:
        """A slot for one more call, or why not."""
        self._expire(now)
        if self.live >= self.max_calls:
            return Refused(
                f"{self.max_calls} outbound calls already live", max(1, math.ceil(self.interval_s))
            )
        at = max(now, self._next_at + self.interval_s)
        if at - now > self.max_wait_s:
            return Refused(
                f"over {1 / self.interval_s:g} calls a second",
                max(1, math.ceil(at - now - self.max_wait_s)),
            )
        self._next_at = at
        self._serial += 1
        self._tickets[self._serial] = at
        return Slot(self._serial, at)

    def placed(self, ticket: int, call_sid: str, now: float) -> None:
        """Twilio took the call: it counts until `ended(call_sid)`."""
        self._tickets.pop(ticket, None)
        self._calls[call_sid] = now + self.ttl_s

    def release(self, ticket: int) -> None:
        """Twilio refused the call (or was not reached): its place is free again. Its slot
        of the pace stays used: Twilio counted the request."""
        self._tickets.pop(ticket, None)

    def ended(self, call_sid: str) -> bool:
        """Twilio reported the call's end; False for a call not counted (another process's,
        or reported twice)."""
        return self._calls.pop(call_sid, None) is not None

    def is_ours(self, call_sid: str) -> bool:
        return call_sid in self._calls

    def _expire(self, now: float) -> None:
        while self._calls:
            call_sid, expires_at = next(iter(self._calls.items()))
            if expires_at > now:
                break
            del self._calls[call_sid]
