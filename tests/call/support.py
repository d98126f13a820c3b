"""A call core as the tests of its parts build it: μ-law passthrough (8 bytes are 1 ms, a
160-byte delta is one 20 ms frame), a persona with a keypad menu, and the steps of a
conversation as the model and Twilio would take them."""

from __future__ import annotations

import base64
from typing import Any

from bridge import twilio_stream as tw
from bridge.audio import make_pipeline
from bridge.call import Call, CallRules, Effect, Log
from bridge.persona import DtmfAction, DtmfConfig, EndCallTool, Persona, Tools, TransferTarget
from bridge.realtime import events as ev
from bridge.realtime.dialect import Dialect
from bridge.realtime.events import SessionConfig
from bridge.tools import dtmf, end_call
from bridge.tools.base import ToolEnv, ToolResult
from tests.callcore import drain, sink_of
from tests.conftest import make_settings

SID = "MZ" + "0" * 32
CALL_SID = "CA" + "1" * 32


def persona() -> Persona:
    return Persona(
        name="desk",
        instructions="Answer.",
        greeting="Hi.",
        tools=Tools(end_call=EndCallTool(filler="Bye now.")),
        transfer_targets={"operator": TransferTarget(number="+12125550110")},
        dtmf=DtmfConfig(
            menu={
                "0": DtmfAction(action="transfer", target="operator"),
                "#": DtmfAction(action="end_call"),
                "5": DtmfAction(action="say", text="We open at nine."),
            }
        ),
    )


ENV = ToolEnv(persona(), make_settings(), CALL_SID)


def make_call(rules: CallRules | None = None) -> Call:
    call = Call(
        stream_sid=SID,
        call_sid=CALL_SID,
        dialect=Dialect("ga"),
        audio=make_pipeline("pcmu"),
        session=SessionConfig(instructions="be brief", audio_format="pcmu"),
        greeting=None,
        started_at=0.0,
        rules=rules or CallRules(),
        keypad=lambda digit: dtmf.decide(ENV.persona, digit, ENV),
    )
    call.upstream_opened(0.0)
    # The session confirms its configuration and the agent speaks first (nothing, here).
    call.on_upstream(ev.SessionUpdated(), 0.0)
    call.on_upstream(ev.ResponseCreated("resp_greeting"), 0.0)
    call.on_upstream(ev.ResponseDone("resp_greeting", "completed"), 0.0)
    drain(call)
    return call


class Conversation:
    """One call core and what it has sent, event by event."""

    def __init__(self, call: Call | None = None) -> None:
        self.call = call or make_call()
        self.sent: list[dict[str, Any]] = []
        self.effects: list[Effect] = []
        self.marks: list[str] = []
        self._responses = 0

    def pump(self) -> None:
        twilio, upstream, effects = drain(self.call)
        self.sent += upstream
        self.effects += effects
        self.marks += [m["mark"]["name"] for m in twilio if m["event"] == "mark"]

    def upstream(self, *events: ev.ServerEvent, now: float = 0.0) -> None:
        for event in events:
            self.call.on_upstream(event, now)
            self.pump()

    def twilio(self, event: tw.TwilioEvent, now: float = 0.0) -> None:
        self.call.on_twilio(event, now)
        self.pump()

    def model_calls(self, name: str, result: ToolResult, response_id: str = "resp_1") -> None:
        """The model calls a tool in a response of its own, and the tool answers."""
        call = ev.FunctionCall(response_id, "fc_c1", "c1", name, "{}")
        self.upstream(
            ev.ResponseCreated(response_id), call, ev.ResponseDone(response_id, "completed")
        )
        self.call.tool_finished(call, {}, result, 2.0, 0.0)
        self.pump()

    def speak(self, response_id: str, item_id: str, ms: int, now: float = 0.0) -> None:
        audio = base64.b64encode(b"\x10" * (8 * ms)).decode()
        self.upstream(
            ev.ResponseCreated(response_id),
            ev.OutputItemAdded(response_id, item_id, "message", "assistant"),
            ev.AudioDelta(response_id, item_id, audio),
            ev.AudioDone(response_id, item_id),
            ev.ResponseDone(response_id, "completed"),
            now=now,
        )

    def play_out(self, now: float = 0.0) -> None:
        """The caller's side echoes every mark: all audio has played."""
        marks, self.marks = self.marks, []
        for name in marks:
            self.twilio(tw.Mark(SID, name), now)

    def tick(self, now: float) -> None:
        self.call.tick(now)
        self.pump()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.sent if e["type"] == kind]

    def effects_of(self, kind: type) -> list[Any]:
        return [e for e in self.effects if isinstance(e, kind)]

    def logs(self, event: str) -> list[dict[str, Any]]:
        return [e.fields for e in self.effects if isinstance(e, Log) and e.event == event]

    def take_effects(self) -> list[Effect]:
        effects, self.effects = self.effects, []
        return effects


def end_call_result() -> ToolResult:
    return ToolResult.of(
        {"ok": True, "status": "ending the call"},
        respond=False,
        handoff=end_call.handoff(ENV.persona, ENV),
    )


__all__ = ["CALL_SID", "ENV", "SID", "Conversation", "end_call_result", "make_call", "sink_of"]
