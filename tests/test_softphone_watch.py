"""The softphone's transcript stream is readable only by the page that placed the call: over
real sockets, a CallSid without its key (or with another's) gets 403 and no line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson

from bridge.sim import TwilioMediaStream, place_call
from bridge.softphone import MAX_WATCHED_CALLS, WatchKeys
from bridge.softphone.transcripts import FEED
from tests.conftest import make_settings, running_bridge, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say

GREETING = "Hello, this is a test."


async def ticket(http: httpx.AsyncClient) -> dict[str, str]:
    response = await http.post("/softphone/watch")
    assert response.status_code == 200
    return dict(response.json())


async def data_lines(response: httpx.Response) -> AsyncIterator[dict[str, object]]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield orjson.loads(line[6:])


def test_a_key_belongs_to_its_call_sid_and_its_process() -> None:
    keys = WatchKeys()
    first, second = keys.ticket(), keys.ticket()
    assert first["call_sid"] != second["call_sid"]
    assert first["call_sid"].startswith("CA") and len(first["call_sid"]) == 34
    assert keys.valid(first["call_sid"], first["key"])
    assert not keys.valid(first["call_sid"], second["key"])
    assert not keys.valid(first["call_sid"], "")
    assert not WatchKeys().valid(first["call_sid"], first["key"])  # another process's secret


async def test_only_the_key_of_the_ticket_opens_the_calls_transcript() -> None:
    async with FakeRealtimeServer("ga", [[Say(GREETING, 200)]]) as fake:
        settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url)
        async with (
            running_bridge(settings) as bridge,
            httpx.AsyncClient(base_url=bridge.base_url, timeout=10) as http,
        ):
            mine, other = await ticket(http), await ticket(http)
            sid = mine["call_sid"]
            refused = {
                "no key": {"call_sid": sid},
                "wrong key": {"call_sid": sid, "key": "0" * 64},
                "another ticket's key": {"call_sid": sid, "key": other["key"]},
                "the key for another call": {"call_sid": other["call_sid"], "key": mine["key"]},
            }
            async with http.stream("GET", "/softphone-events", params=mine) as events:
                assert events.status_code == 200
                lines = data_lines(events)
                target = await place_call(bridge.base_url, call_sid=sid, from_number="+1555000")
                async with TwilioMediaStream(target) as stream:
                    await wait_until(lambda: stream.played_ms_total >= 200, 5, "the greeting")
                    seen = []
                    async with asyncio.timeout(5):
                        async for line in lines:
                            seen.append(line)
                            if line.get("event") == "transcript":
                                break
                    # while the call is live and watched, nobody else gets a line
                    for params in refused.values():
                        response = await http.get("/softphone-events", params=params)
                        assert (response.status_code, response.text) == (403, "not your call")
    assert seen[0]["event"] == "call_started" and seen[0]["from"] == "+1555000"
    assert (seen[-1]["role"], seen[-1]["text"]) == ("agent", GREETING)
    assert {line["call_sid"] for line in seen} == {sid}


async def test_watched_calls_are_capped() -> None:
    for index in range(MAX_WATCHED_CALLS):
        FEED.watch(f"CA{index:032x}")
    try:
        async with (
            running_bridge(make_settings()) as bridge,
            httpx.AsyncClient(base_url=bridge.base_url) as http,
        ):
            response = await http.get("/softphone-events", params=await ticket(http))
        assert response.status_code == 503
    finally:
        for index in range(MAX_WATCHED_CALLS):
            FEED._backlog.pop(f"CA{index:032x}", None)
