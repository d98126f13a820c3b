"""Keypad presses end to end: the fake caller sends Twilio `dtmf` events; the persona's menu
transfers, speaks or ends the call, and other keys reach the model as a short message."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

from bridge.engine.items import MessageItem
from bridge.persona import DtmfAction, DtmfConfig, Persona, TransferTarget
from tests.conftest import LogCapture, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.tools.helpers import ACCOUNT_SID, AUTH_TOKEN, bridged_call, response_creates

OPERATOR = "+12125550110"
HOLD = "Please hold while I transfer you."  # the transfer line's default


def front_desk() -> Persona:
    return Persona(
        name="frontdesk",
        instructions="You answer the phone.",
        greeting="Hello.",
        transfer_targets={"operator": TransferTarget(number=OPERATOR)},
        dtmf=DtmfConfig(
            menu={
                "0": DtmfAction(action="transfer", target="operator"),
                "9": DtmfAction(action="say", text="We are open from nine to five."),
            },
            unlisted="to_model",
        ),
    )


async def test_keypad_0_transfers_to_the_operator_after_the_hold_line(logs: LogCapture) -> None:
    script = [[Say("Hello.", 200)], [Say(HOLD, 500)]]
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, front_desk(), rest=rest) as call:
                await wait_until(lambda: call.stream.played_ms_total >= 200, 5, "the greeting")
                await call.stream.wait_playback_idle()
                pressed = len(call.stream.marks)
                await call.stream.send_dtmf("0")
                request = await rest.wait_for_request(1, 8)
                await asyncio.wait_for(call.stream.closed, 3)
                await logs.wait_for("call_ended")
            assert fake.violations == []
    dial = ET.fromstring(request.form["Twiml"]).find("Dial")
    assert dial is not None and (dial.text, dial.get("timeout")) == (OPERATOR, "20")
    assert dial.get("callerId") == "+15550002222"  # the number the caller dialled
    assert (dial.get("action") or "").split("?")[0].endswith("/dial-ended")
    line_marks = call.stream.marks[pressed:]
    assert line_marks and request.time > max(m.sent_at or 0.0 for m in line_marks)
    assert HOLD in response_creates(call.session)[1]["response"]["instructions"]
    assert call.session.client_events("conversation.item.create") == []  # not the model's call
    assert logs.events("dtmf")[0] == logs.events("dtmf")[0] | {
        "digit": "0",
        "action": "transfer",
        "target": "operator",
    }
    assert logs.events("call_ended")[0]["reason"] == "transferred"


async def test_an_unlisted_key_reaches_the_model_as_a_short_user_message(
    logs: LogCapture,
) -> None:
    script = [[Say("Hello.", 200)], [Say("You pressed five.", 300)]]
    async with FakeRealtimeServer("ga", script) as fake:
        async with bridged_call(fake, front_desk()) as call:
            await wait_until(lambda: call.stream.played_ms_total >= 200, 5, "the greeting")
            await call.stream.send_dtmf("5")
            await call.session.wait_for_event("response.done", 5, nth=2)
            await wait_until(lambda: call.stream.played_ms_total >= 500, 5, "the answer")
        assert fake.violations == []
    (item,) = [e["item"] for e in call.session.client_events("conversation.item.create")]
    assert item["role"] == "user"
    assert item["content"] == [
        {"type": "input_text", "text": "The caller pressed 5 on the keypad."}
    ]
    creates = response_creates(call.session)
    assert len(creates) == 2 and "response" not in creates[1]  # the model answers freely
    last = call.session.requests[1].conversation[-1]
    assert isinstance(last, MessageItem) and last.text == "The caller pressed 5 on the keypad."
    assert logs.events("dtmf")[0]["action"] == "to_model"


async def test_a_say_key_has_the_agent_read_the_personas_text() -> None:
    script = [[Say("Hello.", 200)], [Say("We are open from nine to five.", 300)]]
    async with FakeRealtimeServer("ga", script) as fake:
        async with bridged_call(fake, front_desk()) as call:
            await wait_until(lambda: call.stream.played_ms_total >= 200, 5, "the greeting")
            await call.stream.send_dtmf("9")
            await call.session.wait_for_event("response.done", 5, nth=2)
        assert fake.violations == []
    instructions = response_creates(call.session)[1]["response"]["instructions"]
    assert '"We are open from nine to five."' in instructions
