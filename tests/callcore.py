"""Driving the call core as its adapter does, with no sockets: a sink that records what
`Call.drain` hands it, and the small steps tests repeat."""

from __future__ import annotations

import weakref
from typing import Any

import orjson

from bridge.call import Call, Effect
from bridge.realtime import events as ev
from bridge.tools.base import ToolResult


class RecordingSink:
    """Takes what the core drains, in the order it leaves; `backlog` fakes a socket whose
    kernel buffer is full (bytes written and not yet taken)."""

    def __init__(self) -> None:
        self.twilio: list[str] = []
        self.upstream: list[str] = []
        self.effects: list[Effect] = []
        self.urgent: list[bool] = []
        self.twilio_buffered = 0
        self.upstream_buffered = 0

    def send_twilio(self, messages: list[str], urgent: bool) -> int:
        self.twilio.extend(messages)
        self.urgent.append(urgent)
        return self.twilio_buffered

    def upstream_backlog(self) -> int:
        return self.upstream_buffered

    def send_upstream(self, messages: list[str]) -> None:
        self.upstream.extend(messages)

    def apply(self, effects: list[Effect]) -> None:
        self.effects.extend(effects)

    def take(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Effect]]:
        twilio = [orjson.loads(m) for m in self.twilio]
        upstream = [orjson.loads(m) for m in self.upstream]
        effects = self.effects
        self.twilio, self.upstream, self.effects, self.urgent = [], [], [], []
        return twilio, upstream, effects


_SINKS: weakref.WeakKeyDictionary[Call, RecordingSink] = weakref.WeakKeyDictionary()
"""Each call's sink, gone with the call (an id() could be reused by the next test's call)."""


def sink_of(call: Call) -> RecordingSink:
    sink = _SINKS.get(call)
    if sink is None:
        sink = _SINKS[call] = RecordingSink()
    return sink


def drain(call: Call) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Effect]]:
    """Drain the call once, as the adapter does after each event: (Twilio messages, upstream
    messages, effects), the messages parsed."""
    sink = sink_of(call)
    call.drain(sink)
    return sink.take()


def fcall(call_id: str, response_id: str = "resp_1", name: str = "lookup") -> ev.FunctionCall:
    return ev.FunctionCall(response_id, f"fc_{call_id}", call_id, name, "{}")


def tool_result(
    call: Call,
    response_id: str,
    call_id: str,
    output: str,
    now: float,
    *,
    respond: bool = True,
    name: str = "lookup",
) -> None:
    """A tool's output reaches the core, as the adapter reports a finished tool."""
    function_call = ev.FunctionCall(response_id, f"fc_{call_id}", call_id, name, "{}")
    call.tool_finished(function_call, {}, ToolResult(output, respond=respond), 1.0, now)
