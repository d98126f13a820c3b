"""Bad input is contained: a clear log line for that call, a clean close where it is fatal,
and every other call carries on untouched."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect as sync_connect

from bridge.sim import TwilioMediaStream, place_call
from tests.conftest import LogCapture, RunningBridge, make_settings, running_bridge, wait_until
from tests.fakes.realtime import FakeRealtimeServer, FakeSession, Say

SID = "MZ" + "a" * 32
CALL = "CA" + "b" * 32
SILENCE = base64.b64encode(b"\xff" * 160).decode()


def start_message(stream_sid: str = SID, call_sid: str = CALL) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "accountSid": "AC" + "0" * 32,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": {"persona": "default"},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def media_message(payload: str = SILENCE, stream_sid: str = SID) -> str:
    return json.dumps(
        {
            "event": "media",
            "streamSid": stream_sid,
            "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": payload},
        }
    )


@asynccontextmanager
async def bridge_and_fake() -> AsyncIterator[tuple[RunningBridge, FakeRealtimeServer]]:
    async with FakeRealtimeServer("ga", [[Say("Hello", 200)]]) as fake:
        settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url)
        async with running_bridge(settings) as bridge:
            yield bridge, fake


def appends(session: FakeSession) -> int:
    return len(session.client_events("input_audio_buffer.append"))


BAD_MESSAGES = {
    "malformed_json": '{"event": "media", "streamSid": ',
    "unknown_event": json.dumps({"event": "surprise", "streamSid": SID}),
    "wrong_stream_sid": media_message(stream_sid="MZ" + "f" * 32),
    "invalid_base64": media_message(payload="!!not base64!!"),
    "not_an_object": "[1, 2, 3]",
    "binary_frame": b"\x00\x01\x02",
}


@pytest.mark.parametrize("kind", sorted(BAD_MESSAGES))
async def test_a_bad_message_is_logged_for_that_call_and_the_call_goes_on(
    kind: str, logs: LogCapture
) -> None:
    async with bridge_and_fake() as (bridge, fake):
        async with websockets.connect(bridge.ws_url, max_queue=None) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1"}))
            await ws.send(start_message())
            session = await fake.wait_for_session()
            await ws.send(media_message())
            await wait_until(lambda: appends(session) == 1, 5, "the first append")
            await ws.send(BAD_MESSAGES[kind])
            await ws.send(media_message())
            await wait_until(lambda: appends(session) == 2, 5, "the append after the bad one")
        await wait_until(lambda: bridge.calls.active_calls == 0, 5, "the call to end")
    if kind == "unknown_event":
        lines = logs.events("twilio_event_ignored")
    else:
        lines = logs.events("twilio_message_rejected")
    assert len(lines) == 1 and lines[0]["call_sid"] == CALL
    assert logs.events("call_ended")[0]["reason"] == "caller_hangup"


async def test_media_before_start_closes_1008_and_opens_nothing_upstream() -> None:
    async with bridge_and_fake() as (bridge, fake):
        async with websockets.connect(bridge.ws_url, max_queue=None) as ws:
            await ws.send(media_message())
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        assert fake.sessions == []


async def test_an_oversized_frame_ends_only_that_call(logs: LogCapture) -> None:
    async with bridge_and_fake() as (bridge, fake):
        target = await place_call(bridge.base_url)
        async with TwilioMediaStream(target):
            healthy_session = await fake.wait_for_session()
            async with websockets.connect(bridge.ws_url, max_size=None, max_queue=None) as ws:
                await ws.send(start_message())
                await fake.wait_for_session(2)
                await ws.send(media_message(payload="A" * 100_000))
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
            before = appends(healthy_session)
            await wait_until(lambda: appends(healthy_session) >= before + 10, 5, "more audio")
        await wait_until(lambda: bridge.calls.active_calls == 0, 5, "both calls to end")
    reasons = sorted(line["reason"] for line in logs.events("call_ended"))
    assert reasons == ["caller_hangup", "protocol_error"]


async def test_a_flood_of_protocol_errors_closes_that_call_with_1008() -> None:
    async with bridge_and_fake() as (bridge, _):
        async with websockets.connect(bridge.ws_url, max_queue=None) as ws:
            await ws.send(start_message())
            for _ in range(25):
                await ws.send("garbage")
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008


# --- property-based fuzzing against the live endpoint ---------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
event_names = st.sampled_from(
    ["connected", "start", "media", "mark", "dtmf", "stop", "clear", "bogus", ""]
)
fields = st.sampled_from(["streamSid", "media", "start", "mark", "dtmf", "stop", "sequenceNumber"])
shaped = st.builds(
    lambda event, body: json.dumps({"event": event, **body}),
    event_names,
    st.dictionaries(fields, json_values, max_size=4),
)
mutated = st.one_of(
    st.builds(lambda sid: start_message(stream_sid=sid), st.text(max_size=40)),
    st.builds(lambda payload: media_message(payload=payload), st.text(max_size=300)),
    st.builds(
        lambda digit: json.dumps({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": digit}}),
        st.text(max_size=3),
    ),
    st.builds(
        lambda name: json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": name}}),
        json_values,
    ),
)
messages = st.one_of(
    shaped,
    mutated,
    st.text(max_size=200),
    st.binary(max_size=200),
    st.just(start_message()),
    st.just(media_message()),
)


@dataclass
class LiveBridge:
    """A bridge, its fake upstream and a healthy call, running in a background loop."""

    ws_url: str
    base_url: str
    loop: asyncio.AbstractEventLoop
    healthy: TwilioMediaStream
    session: FakeSession
    fake: FakeRealtimeServer


@pytest.fixture
def live() -> Iterator[LiveBridge]:
    ready: dict[str, Any] = {}
    started = threading.Event()
    stop = threading.Event()

    async def main() -> None:
        script = [[Say("A long answer that plays while the fuzzing runs.", 8000)]]
        async with FakeRealtimeServer("ga", script, speed=1.0) as fake:
            settings = make_settings(
                OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url, MAX_CONCURRENT_CALLS=500
            )
            async with running_bridge(settings) as bridge:
                target = await place_call(bridge.base_url)
                async with TwilioMediaStream(target) as healthy:
                    session = await fake.wait_for_session()
                    ready["live"] = LiveBridge(
                        bridge.ws_url,
                        bridge.base_url,
                        asyncio.get_running_loop(),
                        healthy,
                        session,
                        fake,
                    )
                    started.set()
                    await asyncio.get_running_loop().run_in_executor(None, stop.wait)
                    await healthy.stop()
                    ready["frames_sent"] = len(healthy.frames)
                    await session.wait_closed(5)
                    ready["appends"] = appends(session)

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert started.wait(20), "the live bridge did not start"
    live = ready["live"]
    yield live
    stop.set()
    thread.join(30)
    assert ready["appends"] == ready["frames_sent"], "the healthy call lost caller frames"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(messages, min_size=1, max_size=6))
def test_fuzzed_messages_never_disturb_a_healthy_call(live: LiveBridge, batch: list[Any]) -> None:
    try:
        with sync_connect(live.ws_url, open_timeout=5, close_timeout=1) as ws:
            for message in batch:
                ws.send(message)
    except (websockets.ConnectionClosed, OSError):
        pass  # the bridge may close a misbehaving socket: that is the point
    assert httpx.get(f"{live.base_url}/healthz", timeout=5).status_code == 200
    assert live.healthy.protocol_errors == []
