"""A call is one stream, and streams are counted before anyone is authenticated: the cap
holds when a stream starts (not only at the webhook, and in local mode too), a CallSid has
one stream at a time, a replayed webhook's fresh token opens nothing, and handshakes that
never send `start` are few and brief. Over real loopback sockets; counts asserted."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from bridge.calls import MIN_PENDING_STREAMS
from bridge.sim import TwilioMediaStream, place_call
from bridge.stream_start import START_TIMEOUT_S
from tests.conftest import LogCapture, free_port, make_settings, running_bridge, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say
from tests.tools.helpers import ACCOUNT_SID, AUTH_TOKEN


def start(call_sid: str, stream_sid: str, parameters: dict[str, str] | None = None) -> str:
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
                "customParameters": parameters or {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


async def close_code(ws: ClientConnection, timeout: float = 2.0) -> int | None:
    try:
        async with asyncio.timeout(timeout):
            async for _ in ws:
                pass
    except TimeoutError:
        return None
    except websockets.ConnectionClosed:
        pass
    return ws.close_code


async def test_the_cap_holds_when_streams_start_in_local_mode(logs: LogCapture) -> None:
    script = [[Say("Hello.", 5000)]] * 12
    async with FakeRealtimeServer("ga", script) as fake:
        settings = make_settings(
            OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url, MAX_CONCURRENT_CALLS=5
        )
        async with running_bridge(settings) as bridge:
            sockets = [await connect(bridge.ws_url) for _ in range(12)]
            for n, ws in enumerate(sockets):
                await ws.send(start(f"CA{n:032x}", f"MZ{n:032x}"))
            started = time.monotonic()
            codes = await asyncio.gather(*(close_code(ws, 1.5) for ws in sockets))
            refused_in = time.monotonic() - started
            assert bridge.calls.active_calls == 5
            for ws in sockets:
                await ws.close()
    assert sorted(codes, key=str) == [1013] * 7 + [None] * 5  # five calls live, seven refused
    assert refused_in < 2.0
    reasons = [line["reason"] for line in logs.events("stream_rejected")]
    assert reasons == ["at capacity"] * 7
    assert len(fake.sessions) == 5  # no upstream session was opened for a refused stream


async def test_a_replayed_webhook_opens_no_second_stream_for_its_call(logs: LogCapture) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello.", 5000)]] * 3) as fake:
        port = free_port()
        settings = make_settings(
            OPENAI_API_KEY="sk-test-0123456789",
            REALTIME_URL=fake.url,
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            PUBLIC_URL=f"http://127.0.0.1:{port}",
        )
        async with running_bridge(settings, port=port) as bridge:
            kwargs: dict[str, Any] = {"auth_token": AUTH_TOKEN, "account_sid": ACCOUNT_SID}
            first = await place_call(bridge.base_url, call_sid="CA" + "7" * 32, **kwargs)
            replayed = await place_call(bridge.base_url, call_sid="CA" + "7" * 32, **kwargs)
            assert first.parameters["token"] != replayed.parameters["token"]
            async with TwilioMediaStream(first, auth_token=AUTH_TOKEN) as live:
                await fake.wait_for_session()
                await wait_until(lambda: bridge.calls.active_calls == 1, 5, "the first call")
                again = TwilioMediaStream(replayed, auth_token=AUTH_TOKEN)
                await again.connect()
                info = await asyncio.wait_for(again.closed, 2)
                assert not live.closed.done()
    assert info.code == 1008
    assert [x["reason"] for x in logs.events("stream_rejected")] == [
        "a stream for this call is already live"
    ]
    assert len(fake.sessions) == 1


async def test_handshakes_that_never_start_are_few_and_brief(logs: LogCapture) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello.", 200)]]) as fake:
        settings = make_settings(
            OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url, MAX_CONCURRENT_CALLS=2
        )
        async with running_bridge(settings) as bridge:
            held = [await connect(bridge.ws_url) for _ in range(MIN_PENDING_STREAMS)]
            await wait_until(lambda: bridge.calls.pending == MIN_PENDING_STREAMS, 5, "all held")
            extra = [await connect(bridge.ws_url) for _ in range(6)]
            started = time.monotonic()
            extra_codes = await asyncio.gather(*(close_code(ws, 1.0) for ws in extra))
            assert time.monotonic() - started < 1.0
            held_codes = await asyncio.gather(
                *(close_code(ws, START_TIMEOUT_S + 2.0) for ws in held)
            )
            assert time.monotonic() - started < START_TIMEOUT_S + 1.5
            assert bridge.calls.pending == 0 and bridge.calls.active_calls == 0
    assert extra_codes == [1013] * 6  # refused at once, not held
    assert held_codes == [1008] * MIN_PENDING_STREAMS  # closed at the start deadline
    assert len(logs.events("stream_rejected")) == MIN_PENDING_STREAMS + 6
