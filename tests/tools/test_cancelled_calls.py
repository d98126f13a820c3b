"""A function call of a response that did not complete is never run. The hosted service
sends `response.function_call_arguments.done` "also when a Response is interrupted,
incomplete, or cancelled" (the openai package's ResponseFunctionCallArgumentsDoneEvent), so
the fake does too: a caller who talks over the model as it calls `end_call` is not hung up
on, and arguments cut short are never executed."""

from __future__ import annotations

import asyncio

from bridge.persona import EndCallTool, Persona, Tools
from bridge.sim.audio import speech_like
from tests.conftest import LogCapture, bridged_call, wait_until
from tests.fakes.realtime import FakeRealtimeServer, FunctionCall, Say


def persona() -> Persona:
    return Persona(
        name="desk",
        instructions="Answer.",
        greeting="Hello.",
        tools=Tools(end_call=EndCallTool(filler="Goodbye.")),
    )


async def test_a_caller_who_interrupts_the_model_calling_end_call_is_not_hung_up_on(
    logs: LogCapture,
) -> None:
    script = [
        [Say("Hello.", 300)],
        [FunctionCall("end_call", {"reason": "the caller is done"}, ms=1500)],
        [Say("Sorry, go on.", 300)],
    ]
    async with FakeRealtimeServer("ga", script, ["bye", "wait, one more thing"], speed=1.0) as fake:
        async with bridged_call(fake, persona()) as (_bridge, stream, session):
            await stream.wait_playback_idle()
            stream.say(speech_like(600))  # "bye": the model starts to call end_call
            await session.wait_for_event("response.function_call_arguments.delta", 8)
            stream.say(speech_like(600))  # "wait, one more thing!" while it writes the call
            done = await session.wait_for_event("response.function_call_arguments.done", 8)
            await session.wait_for_event("response.done", 8, nth=2)
            await asyncio.sleep(1.0)
            assert not stream.closed.done()  # still on the line
        cancelled = session.server_events("response.done")[1]["response"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["output"][0]["status"] == "incomplete"
    assert done["arguments"] != '{"reason": "the caller is done"}'  # cut short
    assert logs.events("handoff_started") == [] and logs.events("tool_call") == []
    (dropped,) = logs.events("tool_call_dropped")
    assert (dropped["name"], dropped["response_status"]) == ("end_call", "cancelled")
    outputs = [
        e
        for e in session.client_events("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]
    assert outputs == []
    await wait_until(lambda: logs.events("call_ended"), 5, "the end")
    assert logs.events("call_ended")[0]["reason"] == "caller_hangup"
