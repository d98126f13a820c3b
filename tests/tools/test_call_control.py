"""Transfer and hang-up end to end: the last words play out (every mark echoed by the fake
caller), and only then does the real twilio `Client` update the call on the fake REST API."""

from __future__ import annotations

import asyncio
import json
import time
import xml.etree.ElementTree as ET
from typing import Any

from bridge.persona import (
    DtmfAction,
    DtmfConfig,
    EndCallTool,
    Persona,
    Tools,
    TransferCallTool,
    TransferTarget,
)
from bridge.tools.catalogue import build_tools, unavailable_tools
from tests.conftest import LogCapture, make_settings, wait_until
from tests.fakes.realtime import FakeRealtimeServer, FunctionCall, Say
from tests.fakes.twilio_rest import FakeTwilioRest, RestRequest
from tests.tools.helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BridgedCall,
    bridged_call,
    function_outputs,
    response_creates,
)

HANDOFF = "One moment, I'll put you through."
GOODBYE = "Thank you for calling Maple Street Dental. Goodbye!"
BILLING = "+12125550111"


def receptionist() -> Persona:
    return Persona(
        name="receptionist",
        business_name="Maple Street Dental",
        instructions="You are the receptionist.",
        greeting="Hello.",
        tools=Tools(
            transfer_call=TransferCallTool(filler=HANDOFF),
            end_call=EndCallTool(filler="Thank you for calling {business_name}. Goodbye!"),
        ),
        transfer_targets={
            "operator": TransferTarget(number="+1 212 555 0110", description="The front desk."),
            "billing": TransferTarget(number="+1 (212) 555-0111", description="Invoices."),
        },
        dtmf=DtmfConfig(menu={"0": DtmfAction(action="transfer", target="operator")}),
    )


def assert_after_the_last_words(call: BridgedCall, request: RestRequest, line_ms: int) -> None:
    """The REST update came after the caller's side echoed the last mark of the line."""
    marks = call.stream.marks
    assert marks and not any(m.cleared for m in marks)
    last_echo = max(m.sent_at for m in marks if m.sent_at is not None)
    assert request.time > last_echo
    assert call.stream.played_ms_total >= line_ms
    assert call.stream.buffered_ms == 0


async def test_transfer_plays_the_handoff_line_out_then_dials_the_personas_number(
    logs: LogCapture,
) -> None:
    script = [
        [Say("Sure, billing can help.", 300), FunctionCall("transfer_call", {"target": "billing"})],
        [Say(HANDOFF, 600)],
    ]
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, receptionist(), rest=rest) as call:
                request = await rest.wait_for_request(1, 8)
                info = await asyncio.wait_for(call.stream.closed, 3)
                await logs.wait_for("call_ended")
            assert fake.violations == []
    assert (request.call_sid, request.account_sid) == (call.call_sid, ACCOUNT_SID)
    dial = ET.fromstring(request.form["Twiml"]).find("Dial")
    assert dial is not None and (dial.text, dial.get("timeout")) == (BILLING, "20")
    assert dial.get("callerId") == "+15550002222"  # the number the caller dialled
    assert (dial.get("action") or "").split("?")[0].endswith("/dial-ended")
    assert f">{BILLING}</Dial>" in request.form["Twiml"]
    assert_after_the_last_words(call, request, 300 + 600)
    assert info.initiator == "server"
    # The handoff line was asked for by the bridge, word for word; the model was not asked
    # to answer the tool output on its own.
    creates = response_creates(call.session)
    assert len(creates) == 2 and HANDOFF in creates[1]["response"]["instructions"]
    (output,) = function_outputs(call.session)
    assert json.loads(output["output"]) == {
        "ok": True,
        "status": "transferring",
        "target": "billing",
    }
    assert logs.events("call_ended")[0]["reason"] == "transferred"
    (control,) = logs.events("call_control")
    assert (control["action"], control["target"], control["ok"]) == ("transfer", "billing", True)
    assert logs.problems() == []


async def test_end_call_plays_the_goodbye_out_then_completes_the_call(logs: LogCapture) -> None:
    script = [[Say("Glad I could help.", 300), FunctionCall("end_call")], [Say(GOODBYE, 500)]]
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, receptionist(), rest=rest) as call:
                request = await rest.wait_for_request(1, 8)
                await asyncio.wait_for(call.stream.closed, 3)
                await logs.wait_for("call_ended")
            assert fake.violations == []
    assert request.form == {"Status": "completed"}
    assert request.call_sid == call.call_sid
    assert_after_the_last_words(call, request, 300 + 500)
    assert GOODBYE in response_creates(call.session)[1]["response"]["instructions"]
    assert logs.events("call_ended")[0]["reason"] == "agent_hangup"


async def test_hanging_up_a_call_that_already_ended_is_a_normal_outcome(logs: LogCapture) -> None:
    script = [[FunctionCall("end_call")], [Say(GOODBYE, 300)]]
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, receptionist(), rest=rest) as call:
                rest.ended.add(call.call_sid)  # Twilio answers 404 / 20404
                request = await rest.wait_for_request(1, 8)
                await asyncio.wait_for(call.stream.closed, 3)
                await logs.wait_for("call_ended")
    assert request.status == 404
    (control,) = logs.events("call_control")
    assert (control["ok"], control["http_status"], control["code"]) == (True, 404, 20404)
    assert logs.events("call_ended")[0]["reason"] == "agent_hangup"
    assert logs.problems() == []


async def test_a_stop_that_beats_the_rest_answer_still_ends_the_call_as_transferred(
    logs: LogCapture,
) -> None:
    # Twilio stops the media stream as it redirects the call; its `stop` may well reach the
    # bridge before the REST answer does.
    script = [[FunctionCall("transfer_call", {"target": "operator"})], [Say(HANDOFF, 300)]]
    loop = asyncio.get_running_loop()
    holder: dict[str, Any] = {}

    def stop_first(request: RestRequest) -> None:
        call: BridgedCall = holder["call"]
        asyncio.run_coroutine_threadsafe(call.stream.stop(), loop)
        deadline = time.monotonic() + 3
        while not call.runtime.done.done() and time.monotonic() < deadline:
            time.sleep(0.005)  # until the bridge has seen the stop

    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN, on_update=stop_first) as rest:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, receptionist(), rest=rest) as call:
                holder["call"] = call
                runtime = call.runtime
                await rest.wait_for_request(1, 8)
                await logs.wait_for("call_ended", timeout=5)
    assert runtime.done.result() == "caller_hangup"  # what the stream saw…
    assert logs.events("call_ended")[0]["reason"] == "transferred"  # …and what happened
    assert logs.events("call_control")[0]["ok"] is True


def test_transfer_call_offers_only_the_personas_targets_by_name() -> None:
    settings = make_settings(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        PUBLIC_URL="https://voice.example.com",
    )
    tools = {t.name: t for t in build_tools(receptionist(), settings).function_tools}
    target = tools["transfer_call"].parameters["properties"]["target"]
    assert target["enum"] == ["operator", "billing"]
    assert tools["transfer_call"].parameters["additionalProperties"] is False
    assert "+1" not in json.dumps(tools["transfer_call"].parameters)  # names, never numbers
    assert "billing: Invoices." in tools["transfer_call"].description


def test_without_twilio_credentials_transfers_are_still_offered() -> None:
    """Without REST the stream's end carries the transfer out (the `<Connect>` action's
    `<Dial>`), so nothing is left out and start-up has nothing to warn about."""
    settings = make_settings()
    offered = [t.name for t in build_tools(receptionist(), settings).function_tools]
    assert offered == ["transfer_call", "end_call"]
    assert unavailable_tools([receptionist()], settings) == []


async def test_no_rest_request_while_the_caller_still_hears_the_line() -> None:
    # Hung up mid-line: the transfer never happens.
    script = [[FunctionCall("transfer_call", {"target": "billing"})], [Say(HANDOFF, 2000)]]
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, receptionist(), rest=rest) as call:
                await wait_until(lambda: call.stream.played_ms_total >= 300, 5, "the line")
                assert rest.requests == []
                await call.stream.stop()
                await wait_until(lambda: call.bridge.calls.active_calls == 0, 3, "the end")
    assert rest.requests == []
