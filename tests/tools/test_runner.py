"""The ToolRunner against the sans-I/O `Call`, driven event by event as the adapter would:
fillers, errors, late results, and the call-control state machine's edge cases. Twilio REST
calls still go over real HTTP to the fake."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import orjson

from bridge import twilio_stream as tw
from bridge.audio import make_pipeline
from bridge.call import Call, Dtmf, PlaybackIdle, RunTool
from bridge.persona import DtmfAction, DtmfConfig, EndCallTool, Persona, Tools, TransferTarget
from bridge.realtime import events as ev
from bridge.realtime.dialect import Dialect
from bridge.realtime.events import SessionConfig
from bridge.settings import Settings
from bridge.tools.base import Tool, ToolEnv, ToolResult, speak_exactly
from bridge.tools.runner import ToolRunner
from tests.conftest import LogCapture, make_settings, wait_until
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.tools.helpers import ACCOUNT_SID, AUTH_TOKEN

SID = "MZ" + "0" * 32
CALL_SID = "CA" + "1" * 32
R1, R2, R3 = "resp_1", "resp_2", "resp_3"


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
            }
        ),
    )


def rest_settings(rest: FakeTwilioRest | None = None) -> Settings:
    if rest is None:
        return make_settings()
    return make_settings(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_BASE_URL=rest.url,
        PUBLIC_URL="https://voice.example.com",
    )


class Harness:
    """A `Call` and its `ToolRunner`, wired as `stream.py` wires them, minus the sockets."""

    def __init__(self, settings: Settings | None = None, **runner: Any) -> None:
        self.call = Call(
            stream_sid=SID,
            call_sid=CALL_SID,
            dialect=Dialect("ga"),
            audio=make_pipeline("pcmu"),
            session=SessionConfig(instructions="be brief", audio_format="pcmu"),
            greeting=None,
            started_at=0.0,
        )
        self.call.upstream_opened(0.0)
        self.sent: list[dict[str, Any]] = []
        self.marks: list[str] = []
        self.ended: list[str] = []
        env = ToolEnv(persona(), settings or make_settings(), CALL_SID)
        self.runner = ToolRunner(
            self.call, flush=self.flush, end=self.ended.append, context=env, **runner
        )
        self.pump()
        self.sent.clear()

    async def flush(self) -> None:
        self.pump()

    def pump(self) -> None:
        """What the adapter does after each event: send, then apply the effects."""
        self.sent += [orjson.loads(m) for m in self.call.upstream_out]
        self.call.upstream_out.clear()
        for message in self.call.twilio_out:
            event = orjson.loads(message)
            if event["event"] == "mark":
                self.marks.append(event["mark"]["name"])
        self.call.twilio_out.clear()
        effects, self.call.effects = self.call.effects, []
        for effect in effects:
            if isinstance(effect, RunTool):
                self.runner.start(effect.call)
            elif isinstance(effect, Dtmf):
                self.runner.dtmf(effect.digit)
            elif isinstance(effect, PlaybackIdle):
                self.runner.playback_idle()

    def upstream(self, *events: ev.ServerEvent) -> None:
        for event in events:
            self.call.on_upstream(event, 0.0)
            self.pump()

    def respond_with_call(self, name: str, arguments: str = "{}", call_id: str = "c1") -> None:
        call = ev.FunctionCall(R1, f"fc_{call_id}", call_id, name, arguments)
        self.upstream(ev.ResponseCreated(R1), call, ev.ResponseDone(R1, "completed"))

    def speak(self, response_id: str, item_id: str, ms: int) -> None:
        audio = base64.b64encode(b"\x10" * (8 * ms)).decode()
        self.upstream(
            ev.ResponseCreated(response_id),
            ev.OutputItemAdded(response_id, item_id, "message", "assistant"),
            ev.AudioDelta(response_id, item_id, audio),
            ev.AudioDone(response_id, item_id),
            ev.ResponseDone(response_id, "completed"),
        )

    def play_out(self) -> None:
        """The caller's side echoes every mark: all audio has played."""
        marks, self.marks = self.marks, []
        for name in marks:
            self.call.on_twilio(tw.Mark(SID, name), 0.0)
            self.pump()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.sent if e["type"] == kind]

    def outputs(self) -> list[Any]:
        return [
            json.loads(e["item"]["output"])
            for e in self.of_type("conversation.item.create")
            if e["item"]["type"] == "function_call_output"
        ]


def tool(name: str, run: Any, *, timeout_s: float = 5.0, filler: str | None = None) -> Tool:
    return Tool(name, "a test tool", {"type": "object", "properties": {}}, run, timeout_s, filler)


async def settle(harness: Harness) -> None:
    """Until the runner's work is done (a handoff's watchdog sleeps on, by design)."""

    def quiet() -> bool:
        return all(t.get_name() == "tool:handoff-watchdog" for t in harness.runner.tasks)

    await wait_until(quiet, 3, "the runner's tasks")


async def test_a_slow_tool_gets_its_filler_once_while_the_model_is_silent() -> None:
    release = asyncio.Event()

    async def slow(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        await release.wait()
        return ToolResult("done")

    h = Harness(tools={"slow": tool("slow", slow, filler="Just a moment.")}, filler_after_s=0.05)
    h.respond_with_call("slow")
    await wait_until(lambda: h.of_type("response.create"), 2, "the filler")
    (filler,) = h.of_type("response.create")
    assert filler["response"]["instructions"] == speak_exactly("Just a moment.")
    h.upstream(ev.ResponseCreated(R2))  # the filler is being spoken…
    release.set()  # …when the tool answers
    await settle(h)
    assert len(h.of_type("response.create")) == 1  # no second response while one is active
    assert h.sent[-1]["type"] == "conversation.item.create"
    h.upstream(ev.ResponseDone(R2, "completed"))
    assert [e["type"] for e in h.sent[-2:]] == ["conversation.item.create", "response.create"]


async def test_no_filler_while_a_response_is_under_way_or_for_a_quick_tool() -> None:
    release = asyncio.Event()

    async def slow(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        await release.wait()
        return ToolResult("done")

    h = Harness(tools={"slow": tool("slow", slow, filler="Just a moment.")}, filler_after_s=0.05)
    call = ev.FunctionCall(R1, "fc_c1", "c1", "slow", "{}")
    h.upstream(ev.ResponseCreated(R1), call)  # the model is still talking
    await asyncio.sleep(0.15)
    release.set()
    h.upstream(ev.ResponseDone(R1, "completed"))
    await settle(h)
    assert [e.get("response") for e in h.of_type("response.create")] == [None]


async def test_errors_become_results_the_model_can_talk_about(logs: LogCapture) -> None:
    async def broken(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        raise RuntimeError("disk on fire")

    async def hangs(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    tools = {"broken": tool("broken", broken), "hangs": tool("hangs", hangs, timeout_s=0.1)}
    h = Harness(tools=tools)
    calls = [
        ev.FunctionCall(R1, "fc_1", "c1", "broken", "{}"),
        ev.FunctionCall(R1, "fc_2", "c2", "hangs", "{}"),
        ev.FunctionCall(R1, "fc_3", "c3", "nonexistent", "{}"),
        ev.FunctionCall(R1, "fc_4", "c4", "broken", "{not json"),
    ]
    h.upstream(ev.ResponseCreated(R1), *calls, ev.ResponseDone(R1, "completed"))
    await settle(h)
    errors = [o["error"] for o in h.outputs()]
    assert errors[0] == "broken failed: RuntimeError: disk on fire"
    assert errors[1] == "hangs timed out after 0.1 s"
    assert errors[2] == "unknown tool 'nonexistent'"
    assert errors[3].startswith("arguments are not valid JSON")
    assert len(h.of_type("response.create")) == 1
    lines = logs.events("tool_call")
    assert sorted(line["name"] for line in lines) == ["broken", "broken", "hangs", "nonexistent"]
    assert not any(line["ok"] for line in lines)
    assert next(x for x in lines if x["name"] == "hangs")["duration_ms"] >= 100


async def test_a_result_after_the_call_ended_is_dropped() -> None:
    release = asyncio.Event()

    async def slow(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        await release.wait()
        return ToolResult("too late")

    h = Harness(tools={"slow": tool("slow", slow)})
    h.respond_with_call("slow")
    h.call.finish("caller_hangup", 1.0)
    h.pump()
    release.set()
    await settle(h)
    assert h.sent == [] and h.call.upstream_out == []
    await h.runner.aclose()


async def test_end_call_answers_without_a_new_response_then_says_goodbye_then_hangs_up(
    logs: LogCapture,
) -> None:
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        h = Harness(rest_settings(rest))
        h.respond_with_call("end_call")
        await settle(h)
        assert h.outputs() == [{"ok": True, "status": "ending the call"}]
        (goodbye,) = h.of_type("response.create")
        assert goodbye["response"]["instructions"] == speak_exactly("Bye now.")
        h.speak(R2, "bye_item", 300)
        await asyncio.sleep(0.05)
        assert rest.requests == [] and h.ended == []  # still playing
        h.play_out()
        await rest.wait_for_request(1, 5)
        await wait_until(lambda: h.ended, 5, "the end of the call")
    assert rest.requests[0].form == {"Status": "completed"}
    assert h.ended == ["agent_hangup"] and h.runner.end_reason == "agent_hangup"
    await h.runner.aclose()


async def test_a_handoff_the_model_chose_is_called_off_when_the_caller_talks_over_it(
    logs: LogCapture,
) -> None:
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        h = Harness(rest_settings(rest))
        h.respond_with_call("end_call")
        await settle(h)
        h.upstream(
            ev.ResponseCreated(R2),
            ev.OutputItemAdded(R2, "bye_item", "message", "assistant"),
            ev.AudioDelta(R2, "bye_item", base64.b64encode(b"\x10" * 8000).decode()),
        )
        h.upstream(ev.SpeechStarted("user_1", 0))  # "wait, one more thing!"
        h.upstream(ev.ResponseDone(R2, "cancelled"))
        await asyncio.sleep(0.1)
    assert rest.requests == [] and h.ended == []
    assert logs.events("handoff_cancelled")[0]["reason"] == "caller spoke"
    await h.runner.aclose()


async def test_keypad_end_call_goes_ahead_and_local_mode_closes_the_stream() -> None:
    h = Harness()  # no Twilio credentials: the stream is closed instead
    h.call.on_twilio(tw.Dtmf(SID, "#"), 0.0)
    h.pump()
    await settle(h)
    assert h.of_type("response.create")[0]["response"]["instructions"] == speak_exactly("Bye now.")
    h.speak(R1, "bye_item", 200)
    h.play_out()
    await wait_until(lambda: h.ended, 3, "the end of the call")
    assert h.ended == ["agent_hangup"]
    await h.runner.aclose()


async def test_a_keypad_transfer_without_credentials_reaches_the_model_instead() -> None:
    h = Harness()
    h.call.on_twilio(tw.Dtmf(SID, "0"), 0.0)
    h.pump()
    await settle(h)
    (item,) = h.of_type("conversation.item.create")
    assert item["item"]["content"][0]["text"] == "The caller pressed 0 on the keypad."
    assert h.ended == []
    await h.runner.aclose()


async def test_a_failed_transfer_keeps_the_caller_and_tells_the_model(logs: LogCapture) -> None:
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN, fail_status=500) as rest:
        h = Harness(rest_settings(rest))
        h.call.on_twilio(tw.Dtmf(SID, "0"), 0.0)
        h.pump()
        await settle(h)
        h.speak(R1, "hold_item", 200)
        h.play_out()
        await wait_until(lambda: len(h.of_type("response.create")) == 2, 5, "the apology")
    assert h.ended == [] and h.runner.end_reason is None
    assert "did not go through" in h.of_type("response.create")[1]["response"]["instructions"]
    (control,) = logs.events("call_control")
    assert (control["ok"], control["http_status"], control["level"]) == (False, 500, "warning")
    await h.runner.aclose()


async def test_the_watchdog_acts_when_the_line_never_finishes(logs: LogCapture) -> None:
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        h = Harness(rest_settings(rest), handoff_max_wait_s=0.2)
        h.call.on_twilio(tw.Dtmf(SID, "0"), 0.0)
        h.pump()
        h.upstream(ev.ResponseCreated(R1))  # the hold line starts and never ends
        await rest.wait_for_request(1, 5)
        await wait_until(lambda: h.ended, 3, "the end of the call")
    assert h.ended == ["transferred"]
    assert logs.events("handoff_forced")[0]["stage"] == "speaking"
    await h.runner.aclose()


def test_respond_false_answers_the_call_without_asking_for_a_response() -> None:
    h = Harness()
    call = ev.FunctionCall(R1, "fc_1", "c1", "x", "{}")
    h.call.on_upstream(ev.ResponseCreated(R1), 0.0)
    h.call.on_upstream(call, 0.0)
    h.call.on_upstream(ev.ResponseDone(R1, "completed"), 0.0)
    h.call.effects.clear()
    h.call.tool_result(R1, "c1", "{}", 0.1, respond=False)
    assert [orjson.loads(m)["type"] for m in h.call.upstream_out] == ["conversation.item.create"]
    assert h.call.idle and any(isinstance(e, PlaybackIdle) for e in h.call.effects)
