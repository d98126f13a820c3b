"""Phone audio settings real deployments use: the persona's `noise_reduction`, and the GA
`idle_timeout_ms` whose `input_audio_buffer.timeout_triggered` (the fake's engine sends it
as the service does) is this call's reprompt: the bridge does not reprompt as well, it only
ends the call after a further idle period. One idle policy, not two that overlap."""

from __future__ import annotations

import asyncio

from bridge.persona import DEFAULT_PERSONA, Limits, TurnDetectionConfig
from tests.conftest import LogCapture, bridged_call, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say


async def test_the_servers_idle_prompt_is_the_reprompt_and_the_bridge_only_says_goodbye(
    logs: LogCapture,
) -> None:
    persona = DEFAULT_PERSONA.model_copy(
        update={
            "noise_reduction": "near_field",
            "turn_detection": TurnDetectionConfig(idle_timeout_ms=1000),
            "limits": Limits(idle_seconds=2.0, idle_reprompt="Are you still there?"),
        }
    )
    script = [[Say("Hello.", 300)], [Say("Hello? Are you there?", 300)], [Say("Bye.", 300)]]
    async with FakeRealtimeServer("ga", script, speed=1.0) as fake:
        async with bridged_call(fake, persona) as (_bridge, stream, session):
            await logs.wait_for("call_limit", 1, timeout=8)
            await asyncio.wait_for(stream.closed, 10)
            await wait_until(lambda: logs.events("call_ended"), 3, "the end")
    update = session.client_events("session.update")[0]["session"]["audio"]["input"]
    assert update["noise_reduction"] == {"type": "near_field"}
    assert update["turn_detection"]["idle_timeout_ms"] == 1000
    assert len(session.server_events("input_audio_buffer.timeout_triggered")) >= 1
    limits = [line["limit"] for line in logs.events("call_limit")]
    assert limits[0] == "idle_timeout_ms" and "idle_reprompt" not in limits
    instructions = [
        (e.get("response") or {}).get("instructions") or ""
        for e in session.client_events("response.create")
    ]
    assert not any("Are you still there?" in text for text in instructions)  # no second prompt
    assert logs.events("call_ended")[0]["reason"] == "idle"
