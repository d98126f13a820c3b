"""Tool calls end to end: the fake Realtime "model" calls web_search, the bridge runs it against
a fake Tavily over real HTTP, and the audio never waits for it."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from bridge.engine.items import FunctionCallOutputItem
from bridge.engine.responder import ResponseRequest
from bridge.persona import Persona, Tools, TurnDetectionConfig, WebSearchTool
from bridge.sim.audio import speech_like
from tests.conftest import LogCapture, wait_until
from tests.fakes.realtime import FakeRealtimeServer, FunctionCall, Say
from tests.fakes.tavily import FakeTavily, result
from tests.tools.helpers import TAVILY_KEY, bridged_call, client_types, function_outputs

RESULTS = [result("R7 firmware 4.2", "https://northwind.example/r7", "Fixes 5 GHz drop-outs.")]
MAX_APPEND_GAP_S = 0.060


def persona(
    *, timeout_seconds: float = 6.0, filler: str = "", create_response: bool = True
) -> Persona:
    return Persona(
        name="support",
        instructions="Help with routers.",
        greeting="Hi.",
        turn_detection=TurnDetectionConfig(create_response=create_response),
        tools=Tools(web_search=WebSearchTool(timeout_seconds=timeout_seconds, filler=filler)),
    )


def reply(text: str, ms: int = 200) -> Any:
    return lambda request: [Say(text, ms)]


def search(query: str) -> FunctionCall:
    return FunctionCall("web_search", {"query": query})


def sent_time(call: Any, type: str) -> float:
    return next(r.time for r in call.session.sent if r.type == type)


def received_time(call: Any, type: str, where: Any = lambda e: True) -> float:
    return next(
        r.time for r in call.session.received if r.type == type and r.event and where(r.event)
    )


async def test_a_two_second_tool_never_holds_up_the_callers_audio(logs: LogCapture) -> None:
    # The caller talks all through a 2 s search; its filler plays meanwhile. Every 20 ms
    # frame must still reach the Realtime server on time: the audio pumps never wait.
    script = [[Say("Hello", 200), search("r7 firmware")], *[reply("Here you go.")] * 4]
    with FakeTavily(TAVILY_KEY, answer="4.2", results=RESULTS, delay_s=2.0) as tavily:
        async with FakeRealtimeServer("ga", script) as fake:
            the_persona = persona(filler="Let me check that.", create_response=False)
            async with bridged_call(fake, the_persona, tavily=tavily) as call:
                await wait_until(lambda: tavily.requests, 5, "the search to start")
                call.stream.say(speech_like(2400))
                await call.session.wait_for_event(
                    "conversation.item.create",
                    6,
                    where=lambda e: e["item"]["type"] == "function_call_output",
                )
                await logs.wait_for("tool_call", 1)
            assert fake.violations == []
    began = sent_time(call, "response.function_call_arguments.done")
    answered = received_time(
        call, "conversation.item.create", lambda e: e["item"]["type"] == "function_call_output"
    )
    assert answered - began >= 1.9  # the tool really took its 2 s
    appends = [
        r.time
        for r in call.session.received
        if r.type == "input_audio_buffer.append" and began <= r.time <= answered
    ]
    gaps = [b - a for a, b in itertools.pairwise(appends)]
    print(f"\nappends during the tool: {len(appends)}, max gap {max(gaps) * 1000:.1f} ms")
    assert len(appends) >= 90  # ~100 frames in 2 s
    assert max(gaps) <= MAX_APPEND_GAP_S
    # The filler was asked for while the search ran, as a response of its own.
    fillers = [
        e for e in call.session.client_events("response.create") if "Let me check that." in str(e)
    ]
    assert len(fillers) == 1
    (line,) = logs.events("tool_call")
    assert (line["name"], line["arguments"], line["ok"]) == (
        "web_search",
        {"query": "r7 firmware"},
        True,
    )
    assert line["duration_ms"] >= 1900


async def test_two_function_calls_in_one_response_get_both_answers_then_one_response(
    logs: LogCapture,
) -> None:
    script = [[search("r7 firmware"), search("r7 manual")], [Say("Found both.", 200)]]
    with FakeTavily(TAVILY_KEY, answer="4.2", results=RESULTS) as tavily:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, persona(), tavily=tavily) as call:
                await call.session.wait_for_event("response.done", 5, nth=2)
                await wait_until(lambda: call.stream.played_ms_total >= 200, 5, "the answer")
            assert fake.violations == []
    calls = [
        e["item"]["call_id"]
        for e in call.session.server_events("response.output_item.done")
        if e["item"]["type"] == "function_call"
    ]
    outputs = function_outputs(call.session)
    assert sorted(o["call_id"] for o in outputs) == sorted(calls) and len(calls) == 2
    # Both outputs first, then exactly one response.create (the greeting's was the first).
    types = client_types(call.session)
    after_greeting = types[types.index("response.create") + 1 :]
    assert after_greeting == [
        "conversation.item.create",
        "conversation.item.create",
        "response.create",
    ]
    second: ResponseRequest = call.session.requests[1]
    seen = [i.call_id for i in second.conversation if isinstance(i, FunctionCallOutputItem)]
    assert sorted(seen) == sorted(calls)
    assert all("Answer: 4.2" in o["output"] for o in outputs)
    assert [x["ok"] for x in logs.events("tool_call")] == [True, True]
    assert sorted(x["arguments"]["query"] for x in logs.events("tool_call")) == [
        "r7 firmware",
        "r7 manual",
    ]
    assert TAVILY_KEY not in "\n".join(logs.lines)


async def test_a_search_that_times_out_gives_the_model_an_error_and_the_call_goes_on(
    logs: LogCapture,
) -> None:
    script = [[search("r7 firmware")], [Say("Sorry, the search is slow today.", 300)]]
    with FakeTavily(TAVILY_KEY, results=RESULTS, delay_s=3.0) as tavily:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, persona(timeout_seconds=0.5), tavily=tavily) as call:
                await call.session.wait_for_event("response.done", 5, nth=2)
                await wait_until(lambda: call.stream.played_ms_total >= 300, 5, "the apology")
                assert call.bridge.calls.active_calls == 1  # still on the line
            assert fake.violations == []
    (output,) = function_outputs(call.session)
    assert json.loads(output["output"]) == {
        "ok": False,
        "error": "web_search timed out after 0.5 s",
    }
    (line,) = logs.events("tool_call")
    assert line["ok"] is False and line["level"] == "warning"
    assert 450 <= line["duration_ms"] < 2000


async def test_a_failing_search_gives_the_model_an_error_and_the_call_goes_on(
    logs: LogCapture,
) -> None:
    script = [[search("r7 firmware")], [Say("I could not search just now.", 300)]]
    with FakeTavily(TAVILY_KEY, fail_status=500) as tavily:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, persona(), tavily=tavily) as call:
                await call.session.wait_for_event("response.done", 5, nth=2)
                await wait_until(lambda: call.stream.played_ms_total >= 300, 5, "the apology")
                assert logs.events("call_ended") == []  # the call goes on
            assert fake.violations == []
    (output,) = function_outputs(call.session)
    error = json.loads(output["output"])
    assert error["ok"] is False and error["error"].startswith("web_search failed: HTTPStatusError")
    assert "500" in error["error"]
    assert logs.events("tool_call")[0]["ok"] is False


async def test_a_result_after_hang_up_is_dropped_cleanly(logs: LogCapture) -> None:
    script = [[search("r7 firmware")], [Say("unused", 200)]]
    with FakeTavily(TAVILY_KEY, results=RESULTS, delay_s=1.0) as tavily:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, persona(), tavily=tavily) as call:
                runtime = call.runtime
                await wait_until(lambda: tavily.requests, 5, "the search to start")
                await call.stream.stop()
                await wait_until(lambda: call.bridge.calls.active_calls == 0, 3, "the call end")
                await asyncio.sleep(1.2)  # past the moment the search would have answered
                assert not call.bridge.calls.runtimes
            assert fake.violations == []
    assert function_outputs(call.session) == []
    assert len(runtime.tasks) == 0
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("tool:")] == []
    (line,) = logs.events("tool_call")
    assert (line["ok"], line["error"], line["level"]) == (False, "the call ended first", "info")
    assert logs.events("call_ended")[0]["reason"] == "caller_hangup"
    assert logs.problems() == []
