"""Call limits: a spoken goodbye at the maximum length, a reprompt then an end when idle."""

from __future__ import annotations

import time

from tests.conftest import LogCapture, bridged_call, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say


async def test_max_call_length_says_goodbye_lets_it_play_then_ends(logs: LogCapture) -> None:
    script = [[Say("Hello.", 300)], [Say("Time is up, goodbye.", 700)]]
    async with FakeRealtimeServer("ga", script) as fake:
        async with bridged_call(fake, MAX_CALL_SECONDS=1.5) as (bridge, stream, session):
            created = await session.wait_for_event("response.create", 5, nth=2)
            assert "reached the time limit" in created["response"]["instructions"]
            info = await stream.closed
            await wait_until(lambda: bridge.calls.active_calls == 0, 2, "the call to end")
    # The goodbye was heard to its end before the line closed.
    assert stream.played_ms_total >= 300 + 700
    last_played = max(chunk.end for chunk in stream.played)
    assert info.time >= last_played - 0.05
    assert logs.events("call_ended")[0]["reason"] == "max_duration"


async def test_idle_caller_gets_one_reprompt_then_the_call_ends(logs: LogCapture) -> None:
    script = [[Say("Hello.", 300)], [Say("Are you still there?", 500)], [Say("Goodbye.", 400)]]
    async with FakeRealtimeServer("ga", script) as fake:
        started = time.monotonic()
        # The caller says nothing at all.
        async with bridged_call(fake, IDLE_TIMEOUT_SECONDS=1.0) as (bridge, stream, session):
            reprompt = await session.wait_for_event("response.create", 5, nth=2)
            goodbye = await session.wait_for_event("response.create", 5, nth=3)
            await stream.closed
            elapsed = time.monotonic() - started
            await wait_until(lambda: bridge.calls.active_calls == 0, 2, "the call to end")
    assert "Are you still there?" in reprompt["response"]["instructions"]
    assert "end the call now" in goodbye["response"]["instructions"]
    # greeting 0.3 s + idle 1 s + reprompt 0.5 s + idle 1 s + goodbye 0.4 s, give or take ticks
    assert 3.0 <= elapsed <= 6.0
    assert stream.played_ms_total >= 300 + 500 + 400
    assert logs.events("call_ended")[0]["reason"] == "idle"
