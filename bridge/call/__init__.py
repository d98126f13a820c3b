"""The call core: one phone call's rules, with no I/O (`core.Call`), and what it asks of the
adapter (`effects`). The pure parts with state of their own sit beside it: the handoff's
stages, the limits, the reconnect plan and the rules a call is given when it starts."""

from bridge.call.core import BACKLOG_FRAMES, Call, CallStats, Keypad, Phase, heard_part
from bridge.call.effects import (
    BargeIn,
    CarryOut,
    DropUpstream,
    Effect,
    End,
    Log,
    Measure,
    Outbox,
    PingUpstream,
    Reconnect,
    RenewSession,
    RunTool,
    Sink,
    TranscriptLine,
)
from bridge.call.reconnect import Attempt, GiveUp, Pause, ReconnectStep
from bridge.call.rules import CallRules

__all__ = [
    "BACKLOG_FRAMES",
    "Attempt",
    "BargeIn",
    "Call",
    "CallRules",
    "CallStats",
    "CarryOut",
    "DropUpstream",
    "Effect",
    "End",
    "GiveUp",
    "Keypad",
    "Log",
    "Measure",
    "Outbox",
    "Pause",
    "Phase",
    "PingUpstream",
    "Reconnect",
    "ReconnectStep",
    "RenewSession",
    "RunTool",
    "Sink",
    "TranscriptLine",
    "heard_part",
]
