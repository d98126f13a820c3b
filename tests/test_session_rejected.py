"""A refused `session.update` gets an `error` and no `session.updated` (the session keeps its
defaults): the fake refuses an unknown voice as the service does ("Invalid value: ...").
The bridge notices, logs `session_rejected` with the provider's message, and ends the call
into the fallback within 3 s of `start`, instead of a silent call."""

from __future__ import annotations

import asyncio
import time

from bridge.persona import DEFAULT_PERSONA
from bridge.sim import TwilioMediaStream, continue_after_stream, place_call
from bridge.twiml import UNAVAILABLE_SAY
from tests.conftest import LogCapture, make_settings, running_bridge
from tests.fakes.realtime import FakeRealtimeServer, Say


async def test_an_unknown_voice_ends_the_call_into_the_fallback_within_3_s(
    logs: LogCapture,
) -> None:
    persona = DEFAULT_PERSONA.model_copy(update={"voice": "robot"})
    async with FakeRealtimeServer("ga", [[Say("Hello.", 300)]]) as fake:
        settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url)
        async with running_bridge(settings, persona) as bridge:
            target = await place_call(bridge.base_url)
            started = time.monotonic()
            async with TwilioMediaStream(target) as stream:
                session = await fake.wait_for_session()
                info = await asyncio.wait_for(stream.closed, 5)
                ended_after = time.monotonic() - started
            after = await continue_after_stream(target)
    assert ended_after < 3.0
    assert info.code == 1011
    assert session.server_events("session.updated") == []
    (error,) = session.server_events("error")
    assert error["error"]["code"] == "invalid_value"
    (line,) = logs.events("session_rejected")
    assert line["message"].startswith("Invalid value: 'robot'. Supported values are: 'alloy'")
    assert line["code"] == "invalid_value"
    assert logs.events("call_ended")[0]["reason"] == "session_rejected"
    assert after.said == [UNAVAILABLE_SAY]
    assert stream.played_ms_total == 0  # nothing was said: the greeting waits for the update
