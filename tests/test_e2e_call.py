"""A phone call end to end over real loopback sockets: the fake Twilio caller (real-time
frames, real-time playback, marks echoed as Twilio does) → the bridge under uvicorn → the
fake Realtime server, and back."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from bridge.sim import TwilioMediaStream, place_call
from bridge.sim.audio import speech_like
from tests.conftest import (
    LogCapture,
    bridged_call,
    make_settings,
    running_bridge,
    wait_until,
)
from tests.fakes.realtime import FakeRealtimeServer, Say

GREETING_MS = 600
REPLY_MS = 800
FRAME = 160  # bytes of μ-law: 20 ms


def media_payload_sizes(stream: TwilioMediaStream) -> list[int]:
    import base64

    return [
        len(base64.b64decode(r.message["media"]["payload"]))
        for r in stream.received
        if r.message and r.message.get("event") == "media"
    ]


async def test_full_call_greeting_reply_and_ordered_transcript(logs: LogCapture) -> None:
    script = [[Say("Hello, thanks for calling.", GREETING_MS)], [Say("It is sunny.", REPLY_MS)]]
    async with FakeRealtimeServer("ga", script, ["What is the weather?"], speed=1.0) as fake:
        async with bridged_call(fake) as (_, stream, _session):
            session = await fake.wait_for_session()
            await wait_until(lambda: stream.played_ms_total >= GREETING_MS, 5, "the greeting")
            await stream.wait_playback_idle()
            # The bridge has the greeting's last mark: the caller speaks after it, not over
            # the filter's tail frame (which a loaded machine may still be delivering).
            await logs.wait_for("transcript", 1)
            stream.say(speech_like(700))
            await session.wait_for_event("input_audio_buffer.committed", 5)
            await session.wait_for_event("response.done", 5, nth=2)
            await wait_until(
                lambda: stream.played_ms_total >= GREETING_MS + REPLY_MS, 5, "the reply"
            )
            await logs.wait_for("transcript", 3)
            await stream.wait_playback_idle()
        await session.wait_closed(2)
        assert fake.violations == []
    assert stream.protocol_errors == []
    sizes = media_payload_sizes(stream)
    assert set(sizes) == {FRAME}
    # Each response's audio, plus at most one padded frame holding the filter's tail.
    total_ms = len(sizes) * 20
    assert GREETING_MS + REPLY_MS <= total_ms <= GREETING_MS + REPLY_MS + 2 * 20
    lines = logs.events("transcript")
    assert [(x["role"], x["text"]) for x in lines] == [
        ("agent", "Hello, thanks for calling."),
        ("caller", "What is the weather?"),
        ("agent", "It is sunny."),
    ]
    assert lines[0]["interrupted"] is False and lines[0]["played_ms"] >= GREETING_MS
    assert all(x["call_sid"] == stream.target.call_sid for x in lines)
    started = logs.events("call_started")[0]
    assert (started["provider"], started["audio"], started["persona"]) == (
        "openai",
        "pcm16",
        "default",
    )
    assert logs.events("call_ended")[0]["turns"] == 1


async def test_caller_audio_reaches_upstream_as_24khz_pcm16_appends() -> None:
    async with FakeRealtimeServer("ga", [[Say("Hi", 200)]]) as fake:
        async with bridged_call(fake) as (_, stream, _session):
            session = await fake.wait_for_session()
            await wait_until(lambda: len(stream.frames) >= 25, 5, "25 caller frames")
            await wait_until(lambda: len(session.client_events("input_audio_buffer.append")) >= 20)
            import base64

            appends = session.client_events("input_audio_buffer.append")
            # 20 ms of 8 kHz μ-law (160 bytes) becomes 20 ms of 24 kHz PCM16 (960 bytes).
            assert {len(base64.b64decode(e["audio"])) for e in appends} == {960}
            update = session.client_events("session.update")[0]["session"]
            assert update["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert fake.violations == []


@pytest.mark.parametrize("side", ["stop", "abrupt"])
async def test_caller_hang_up_releases_the_upstream_within_one_second(side: str) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello there, caller.", 3000)]], speed=1.0) as fake:
        async with running_bridge(
            make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url)
        ) as bridge:
            target = await place_call(bridge.base_url)
            stream = TwilioMediaStream(target)
            await stream.connect()
            session = await fake.wait_for_session()
            await wait_until(lambda: stream.played_ms_total > 100, 5, "audio")
            hung_up = time.monotonic()
            if side == "stop":
                await stream.stop()
            else:
                await stream.hangup_abruptly()
            await session.wait_closed(2)
            assert time.monotonic() - hung_up < 1.0
            await wait_until(lambda: bridge.calls.active_calls == 0, 2, "the call to end")
            assert not bridge.calls.runtimes
            await stream.aclose(raise_errors=False)


async def test_upstream_that_ends_and_cannot_be_replaced_closes_the_stream_for_the_fallback(
    logs: LogCapture,
) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello", 200)]]) as fake:
        async with bridged_call(fake) as (bridge, stream, _session):
            await fake.wait_for_session()
            await wait_until(lambda: stream.played_ms_total >= 200, 5, "the greeting")
            closed_at = time.monotonic()
            await fake.stop()  # the model is gone for good: the reconnect window runs out
            info = await asyncio.wait_for(stream.closed, 5)
            assert time.monotonic() - closed_at < 3.0
            assert (info.initiator, info.code) == ("server", 1011)
            await wait_until(lambda: bridge.calls.active_calls == 0, 2, "the call to end")
    assert logs.events("call_ended")[0]["reason"] == "upstream_failed"


async def test_azure_ga_url_and_api_key_header() -> None:
    async with FakeRealtimeServer("ga", [[Say("Hi", 100)]]) as fake:
        settings = {
            "OPENAI_API_KEY": None,
            "REALTIME_URL": None,
            "AZURE_OPENAI_ENDPOINT": f"http://127.0.0.1:{fake.port}",
            "AZURE_OPENAI_API_KEY": "az-key-0123456789",
            "AZURE_OPENAI_DEPLOYMENT": "rt-deploy",
        }
        async with bridged_call(fake, **settings) as (_, stream, _session):
            session = await fake.wait_for_session()
            await wait_until(lambda: stream.played_ms_total >= 100, 5, "the greeting")
            assert session.path == "/openai/v1/realtime"
            assert session.query == {"model": "rt-deploy"}
            assert session.headers["api-key"] == "az-key-0123456789"
            assert "authorization" not in {k.lower() for k in session.headers}
        assert fake.violations == []


async def test_azure_preview_speaks_the_beta_dialect_end_to_end(logs: LogCapture) -> None:
    script = [[Say("Hello from preview.", 300)], [Say("Beta reply.", 300)]]
    async with FakeRealtimeServer("beta", script, ["hello?"], speed=2.0) as fake:
        settings = {
            "OPENAI_API_KEY": None,
            "REALTIME_URL": None,
            "AZURE_OPENAI_ENDPOINT": f"http://127.0.0.1:{fake.port}",
            "AZURE_OPENAI_API_KEY": "az-key-0123456789",
            "AZURE_OPENAI_DEPLOYMENT": "rt-preview",
            "AZURE_OPENAI_API_VERSION": "2025-04-01-preview",
            "AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT": "transcribe",  # a deployment on Azure
        }
        async with bridged_call(fake, **settings) as (_, stream, _session):
            session = await fake.wait_for_session()
            assert session.path == "/openai/realtime"
            assert session.query == {
                "api-version": "2025-04-01-preview",
                "deployment": "rt-preview",
            }
            await wait_until(lambda: stream.played_ms_total >= 300, 5, "the greeting")
            await stream.wait_playback_idle()
            stream.say(speech_like(600))
            await session.wait_for_event("response.done", 5, nth=2)
            await wait_until(lambda: stream.played_ms_total >= 600, 5, "the reply")
            await logs.wait_for("transcript", 3)
            update = session.client_events("session.update")[0]["session"]
            assert update["input_audio_format"] == "pcm16"
            assert update["input_audio_transcription"]["model"] == "transcribe"
        assert fake.violations == []
    assert [x["text"] for x in logs.events("transcript")] == [
        "Hello from preview.",
        "hello?",
        "Beta reply.",
    ]


async def test_pcmu_mode_passes_mulaw_through_in_20ms_frames() -> None:
    async with FakeRealtimeServer("ga", [[Say("Hi there", 500)]]) as fake:
        async with bridged_call(fake, REALTIME_AUDIO="pcmu") as (_, stream, _session):
            session = await fake.wait_for_session()
            await wait_until(lambda: stream.played_ms_total >= 500, 5, "the greeting")
            update = session.client_events("session.update")[0]["session"]
            assert update["audio"]["input"]["format"] == {"type": "audio/pcmu"}
            assert update["audio"]["output"]["format"] == {"type": "audio/pcmu"}
            import base64

            appends = session.client_events("input_audio_buffer.append")
            assert {len(base64.b64decode(e["audio"])) for e in appends} == {FRAME}
        assert fake.violations == []
    assert set(media_payload_sizes(stream)) == {FRAME}
    assert len(media_payload_sizes(stream)) == 25  # 500 ms exactly, no resampler tail


def test_serve_prints_where_it_listens_the_provider_audio_and_persona(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "AZURE", "TWILIO"))}
    env.update({"LOG_FORMAT": "json", "REALTIME_AUDIO": "pcmu", "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    try:
        assert proc.stdout is not None
        serving = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            record = orjson.loads(line)
            if record["event"] == "serving":
                serving = record
                break
        assert serving is not None, proc.stderr.read() if proc.stderr else ""
        assert serving["url"].startswith("http://127.0.0.1:")
        assert (serving["provider"], serving["audio"], serving["persona"]) == (
            "local",
            "pcmu",
            "default",
        )
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("speed", [math.inf])
async def test_every_client_event_validates_against_the_openai_models(speed: float) -> None:
    script = [[Say("Hello", 300)], [Say("Reply", 300)]]
    async with FakeRealtimeServer("ga", script, ["hi"], speed=speed) as fake:
        async with bridged_call(fake) as (_, stream, _session):
            session = await fake.wait_for_session()
            await wait_until(lambda: stream.played_ms_total >= 300, 5, "the greeting")
            stream.say(speech_like(500))
            await session.wait_for_event("response.done", 5, nth=2)
        types = {e["type"] for e in session.client_events()}
        assert {"session.update", "input_audio_buffer.append", "response.create"} <= types
        assert session.conformance == []
        assert fake.violations == []


def test_start_up_says_why_web_search_is_not_offered(logs: LogCapture) -> None:
    from bridge.app import create_app
    from bridge.persona import load_personas

    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    create_app(make_settings(), load_personas(root / "personas" / "support.yaml"))
    reasons = [(r["persona"], r["tool"]) for r in logs.events("tool_unavailable")]
    assert ("support", "web_search") in reasons
    line = next(r for r in logs.events("tool_unavailable") if r["tool"] == "web_search")
    assert "TAVILY_API_KEY" in line["reason"]
