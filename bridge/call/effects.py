"""What the call core asks of its adapter: the effects, and the one outbox they travel in.

The core never performs I/O. After each event it is fed, the adapter calls `Call.drain` once,
which hands the outbox to the adapter's `Sink` in wire order: Twilio messages first (a
barge-in's `clear` must never wait behind anything slow), then upstream control, then
upstream audio (the first to go when the upstream is slower than real time), then the
effects. Nothing but the adapter drains; tools, timers and reconnects feed the core and the
adapter drains after them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.realtime import events as ev
from bridge.tools.base import Handoff


@dataclass(frozen=True, slots=True)
class Log:
    """A structured log line for this call (the events of docs/reference.md)."""

    event: str
    fields: dict[str, Any]
    level: str = "info"


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One line of the call's transcript, in conversation order: for the logs and for anyone
    watching the call live (the softphone) alike."""

    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The caller interrupted the agent; the adapter logs it with the measured reaction time
    (from the message that caused it to the moment the `clear` was written)."""

    item_id: str
    played_ms: int


@dataclass(frozen=True, slots=True)
class RunTool:
    """Run a function call beside the audio; its outcome comes back as `Call.tool_result`."""

    call: ev.FunctionCall


@dataclass(frozen=True, slots=True)
class CarryOut:
    """Carry out a handoff now (Twilio REST, or closing the stream without credentials); the
    outcome comes back as `Call.handoff_result`."""

    handoff: Handoff


@dataclass(frozen=True, slots=True)
class RenewSession:
    """Close the upstream session at this quiet moment; the reconnect path opens a fresh one."""


@dataclass(frozen=True, slots=True)
class PingUpstream:
    """The upstream has been silent while something is expected of it: is it still there?"""


@dataclass(frozen=True, slots=True)
class DropUpstream:
    """The upstream is frozen (silent, pings unanswered): cut it; the reconnect path follows."""


@dataclass(frozen=True, slots=True)
class Reconnect:
    """The upstream is gone: open a new session, asking `Call.reconnect_step` what to do."""


@dataclass(frozen=True, slots=True)
class End:
    """The call is over for `reason`; the adapter tears everything down, then `Call.finish`."""

    reason: str


@dataclass(frozen=True, slots=True)
class Measure:
    """A number for the metrics: `turn_latency` (caller stopped → first agent frame, s)."""

    name: str
    value: float


Effect = (
    Log | TranscriptLine | BargeIn | RunTool | CarryOut | RenewSession | Reconnect | End | Measure
)


class Sink(Protocol):
    """The adapter's side of `Call.drain`: it writes, it does not decide. Each method gets a
    list it must consume before returning (the core reuses it)."""

    def send_twilio(self, messages: list[str], urgent: bool) -> None: ...

    def twilio_backlog(self) -> int:
        """Bytes written to Twilio and not yet taken by the kernel."""
        ...

    def upstream_backlog(self) -> int:
        """Bytes written upstream and not yet taken by the kernel."""
        ...

    def send_upstream(self, messages: list[str]) -> None: ...

    def apply(self, effects: list[Effect]) -> None: ...


@dataclass(slots=True)
class Outbox:
    """What the core decided since the last drain, by destination. `urgent`: the Twilio part
    holds a `clear`, to be written at once rather than at the end of the loop's pass."""

    twilio: list[str] = field(default_factory=list)
    control: list[str] = field(default_factory=list)
    audio: list[str] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    urgent: bool = False
