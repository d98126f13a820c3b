"""After a simulated call, the Prometheus counters and histograms moved by the right amounts."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bridge import metrics
from bridge.sim import TwilioMediaStream, place_call
from bridge.sim.audio import speech_like
from tests.conftest import make_settings, running_bridge, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels or None)
    return value or 0.0


def snapshot() -> dict[str, float]:
    return {
        "calls": sample("voicebridge_calls_total", outcome="caller_hangup"),
        "frames_in": sample("voicebridge_frames_in_total"),
        "frames_out": sample("voicebridge_frames_out_total"),
        "duration": sample("voicebridge_call_duration_seconds_count"),
        "first_audio": sample("voicebridge_time_to_first_audio_seconds_count"),
        "turns": sample("voicebridge_turn_latency_seconds_count"),
        "barge_ins": sample("voicebridge_barge_ins_total"),
    }


async def test_one_call_moves_every_call_metric_by_the_right_amount() -> None:
    # Greeting 3 s (interrupted), then a 400 ms reply; paced so late deltas get dropped.
    script = [[Say("Long greeting.", 3000)], [Say("Short reply.", 400)]]
    async with FakeRealtimeServer("ga", script, ["hi"], speed=3.0) as fake:
        settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url)
        async with running_bridge(settings) as bridge:
            before = snapshot()
            target = await place_call(bridge.base_url)
            async with TwilioMediaStream(target) as stream:
                session = await fake.wait_for_session()
                await wait_until(lambda: stream.played_ms_total >= 500, 5, "greeting audio")
                stream.say(speech_like(400))
                await wait_until(lambda: stream.clears, 5, "the barge-in")
                await session.wait_for_event("response.done", 5, nth=2)
                await wait_until(
                    lambda: stream.played_ms_total - stream.clears[0].played_ms_total >= 400,
                    5,
                    "the reply",
                )
                await stream.wait_playback_idle()
            await wait_until(lambda: bridge.calls.active_calls == 0, 5, "the call to end")
            async with httpx.AsyncClient() as client:
                exposed = (await client.get(f"{bridge.base_url}/metrics")).text
        after = snapshot()
    received_media = sum(
        1 for r in stream.received if r.message and r.message.get("event") == "media"
    )
    delta = {k: after[k] - before[k] for k in after}
    assert delta["calls"] == 1
    assert delta["duration"] == 1
    assert delta["first_audio"] == 1
    assert delta["turns"] == 1
    assert delta["barge_ins"] == 1
    assert delta["frames_in"] == len(stream.frames)
    assert delta["frames_out"] == received_media
    assert sample("voicebridge_active_calls") == 0
    names = {f.name for f in text_string_to_metric_families(exposed)}
    assert {
        "voicebridge_calls",
        "voicebridge_frames_in",
        "voicebridge_turn_latency_seconds",
    } <= names
