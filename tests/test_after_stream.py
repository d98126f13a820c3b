"""What Twilio does once the stream ends, as Twilio does it (twilio.com/docs/voice/twiml/connect,
"action"): the simulator requests the `<Connect>` action, signed, and runs the TwiML it gets;
without an action it would run the verbs after `</Connect>`, where the apology used to be.
A call ended on purpose hangs up; a transfer is dialled, with or without Twilio REST; only a
failed agent or an unknown call hears the fallback."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import httpx
from twilio.request_validator import RequestValidator

from bridge.persona import (
    DtmfAction,
    DtmfConfig,
    EndCallTool,
    Fallback,
    Persona,
    Tools,
    TransferCallTool,
    TransferTarget,
)
from bridge.sim import (
    Continuation,
    TwilioMediaStream,
    continue_after_stream,
    dial_ends,
    place_call,
)
from tests.conftest import LogCapture, bridged_call, make_settings, running_bridge, wait_until
from tests.fakes.realtime import FakeRealtimeServer, FunctionCall, Say
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.tools.helpers import ACCOUNT_SID, AUTH_TOKEN
from tests.tools.helpers import bridged_call as signed_call

GOODBYE = "Thanks for calling. Goodbye!"
SORRY = "Sorry, our assistant is having trouble. Let me get you a person."
OPERATOR = "+12125550110"


def desk() -> Persona:
    return Persona(
        name="desk",
        instructions="Answer.",
        greeting="Hello.",
        tools=Tools(
            end_call=EndCallTool(filler=GOODBYE), transfer_call=TransferCallTool(filler="Hold on.")
        ),
        transfer_targets={"operator": TransferTarget(number=OPERATOR)},
        dtmf=DtmfConfig(menu={"0": DtmfAction(action="transfer", target="operator")}),
        fallback=Fallback(say=SORRY, transfer_to="operator"),
    )


def verbs(after) -> list[str]:  # type: ignore[no-untyped-def]
    return [v.name for v in after.verbs]


async def test_the_webhook_names_the_action_and_the_status_callback_and_nothing_follows() -> None:
    async with running_bridge(make_settings(), desk()) as bridge:
        target = await place_call(bridge.base_url)
    root = ET.fromstring(target.twiml)
    assert [child.tag for child in root] == ["Connect"]  # no apology a deliberate end could hit
    assert target.action == f"http://127.0.0.1:{bridge.port}/stream-ended"
    assert target.status_callback == f"http://127.0.0.1:{bridge.port}/stream-status"


async def test_an_agent_hang_up_without_twilio_rest_ends_with_a_hang_up(logs: LogCapture) -> None:
    script = [[FunctionCall("end_call")], [Say(GOODBYE, 300)]]
    async with FakeRealtimeServer("ga", script) as fake:
        async with bridged_call(fake, desk()) as (_bridge, stream, _):
            await asyncio.wait_for(stream.closed, 8)
            after = await continue_after_stream(stream.target)
    assert (after.via, verbs(after), after.said) == ("action", ["Hangup"], [])
    assert logs.events("stream_ended")[0]["then"] == "hangup"
    assert logs.events("call_ended")[0]["reason"] == "agent_hangup"


async def test_a_hang_up_twilio_rest_refused_still_ends_with_a_hang_up(logs: LogCapture) -> None:
    script = [[FunctionCall("end_call")], [Say(GOODBYE, 300)]]
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN, fail_status=500) as rest:
        async with FakeRealtimeServer("ga", script) as fake:
            async with signed_call(fake, desk(), rest=rest) as call:
                await rest.wait_for_request(1, 8)
                await asyncio.wait_for(call.stream.closed, 5)
                after = await continue_after_stream(call.stream.target, auth_token=AUTH_TOKEN)
    assert (after.via, verbs(after)) == ("action", ["Hangup"])
    (control,) = logs.events("call_control")
    assert (control["ok"], control["http_status"], control["then"]) == (
        False,
        500,
        "connect_action",
    )


async def test_a_keypad_transfer_without_twilio_rest_is_dialled_by_the_action(
    logs: LogCapture,
) -> None:
    script = [[Say("Hello.", 200)], [Say("Hold on.", 300)]]
    async with FakeRealtimeServer("ga", script) as fake:
        async with bridged_call(fake, desk()) as (_bridge, stream, _):
            await stream.wait_playback_idle()
            await stream.send_dtmf("0")
            await asyncio.wait_for(stream.closed, 8)
            after = await continue_after_stream(stream.target)
    assert (verbs(after), after.dialed, after.describe()) == (
        ["Dial"],
        OPERATOR,
        f"transferred to {OPERATOR}",
    )
    assert logs.events("call_ended")[0]["reason"] == "transferred"


async def test_an_unknown_call_and_an_unsigned_request_get_the_fallback_and_403() -> None:
    settings = make_settings(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, PUBLIC_URL="http://127.0.0.1"
    )
    async with running_bridge(settings, desk()) as bridge:
        url = f"{bridge.base_url}/stream-ended"
        public = "http://127.0.0.1/stream-ended"
        form = {"CallSid": "CA" + "9" * 32, "From": "+15550001111", "To": "+15550002222"}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(public, form)
        async with httpx.AsyncClient() as http:
            unsigned = await http.post(url, data=form)
            known_to_nobody = await http.post(
                url, data=form, headers={"X-Twilio-Signature": signature}
            )
    assert unsigned.status_code == 403
    root = ET.fromstring(known_to_nobody.text)
    assert [(c.tag, (c.text or "").strip()) for c in root] == [("Say", SORRY), ("Dial", OPERATOR)]


async def test_a_stream_error_reported_by_twilio_is_logged_with_its_code(logs: LogCapture) -> None:
    async with running_bridge(make_settings(), desk()) as bridge:
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{bridge.base_url}/stream-status",
                data={
                    "CallSid": "CA" + "1" * 32,
                    "StreamSid": "MZ" + "1" * 32,
                    "StreamEvent": "stream-error",
                    "StreamError": "31920 Stream - WebSocket - Handshake Error",
                },
            )
    assert answer.status_code == 204
    (line,) = logs.events("stream_status")
    assert (line["level"], line["status"], line["error"]) == (
        "warning",
        "stream-error",
        "31920 Stream - WebSocket - Handshake Error",
    )


async def test_a_public_url_with_a_path_prefix_is_in_every_url_and_signature() -> None:
    """Behind a proxy that serves the bridge under /voice and strips it before forwarding,
    Twilio signs and requests https://host/voice/...; the bridge sees /incoming-call."""
    settings = make_settings(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        PUBLIC_URL="http://127.0.0.1/voice",
        OPENAI_API_KEY="sk-test-0123456789",
    )
    async with running_bridge(settings, desk()) as bridge:
        target = await place_call(
            bridge.base_url,
            auth_token=AUTH_TOKEN,
            account_sid=ACCOUNT_SID,
            sign_url="http://127.0.0.1/voice/incoming-call",
        )
    assert target.url == "ws://127.0.0.1/voice/media-stream"
    assert target.action == "http://127.0.0.1/voice/stream-ended"
    assert target.status_callback == "http://127.0.0.1/voice/stream-status"


async def test_a_transfer_nobody_answers_brings_the_caller_back_to_the_agent(
    logs: LogCapture,
) -> None:
    """`<Dial>` has a timeout, a caller ID and an action; Twilio requests the action with
    `DialCallStatus=no-answer` when nobody picks up, and the call goes on with the TwiML it
    gets: a new stream for the same call, on which the agent is told and says so."""
    script = [[Say("Hello.", 200)], [Say("Hold on.", 300)]]  # each session's, from the start
    async with FakeRealtimeServer("ga", script) as fake:
        async with bridged_call(fake, desk()) as (_bridge, stream, _):
            await stream.wait_playback_idle()
            await stream.send_dtmf("0")
            await asyncio.wait_for(stream.closed, 8)
            after = await continue_after_stream(stream.target)
            (dial,) = [v for v in after.verbs if v.name == "Dial"]
            assert (dial.text, dial.attrs["timeout"], dial.attrs["callerId"]) == (
                OPERATOR,
                "20",
                "+15550002222",  # the number the caller dialled
            )
            back = await dial_ends(after, stream.target, "no-answer")
            assert back.via == "dial_action" and back.reconnect is not None
            assert back.reconnect.call_sid == stream.target.call_sid
            async with TwilioMediaStream(back.reconnect) as again:
                second = await fake.wait_for_session(2)
                await second.wait_for_event("response.done", 8)
                await wait_until(lambda: again.played_ms_total >= 200, 5, "the apology")
            done = await dial_ends(Continuation("action", (dial,)), stream.target, "completed")
    (opening,) = second.client_events("response.create")[:1]
    assert "was not answered (no answer)" in opening["response"]["instructions"]
    assert [line["then"] for line in logs.events("dial_ended")] == ["back_to_agent", "hangup"]
    assert [v.name for v in done.verbs] == ["Hangup"]
    (resumed,) = logs.events("call_resumed")
    assert (resumed["target"], resumed["dial_status"]) == ("operator", "no-answer")
