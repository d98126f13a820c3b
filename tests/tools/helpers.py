"""A bridged phone call with the tools' services faked on loopback.

The bridge runs signed (as in production: Twilio credentials set, PUBLIC_URL on the test
port), the fake Twilio caller rings it, the fake Realtime server plays the "model", and
call control and web search go over real HTTP, through the real twilio `Client` and
`AsyncTavilyClient`, to `FakeTwilioRest` and `FakeTavily`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from bridge.persona import Persona
from bridge.sim import TwilioMediaStream, place_call
from tests.conftest import RunningBridge, free_port, make_settings, running_bridge, wait_until
from tests.fakes.realtime import FakeRealtimeServer, FakeSession
from tests.fakes.tavily import FakeTavily
from tests.fakes.twilio_rest import FakeTwilioRest

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "twilio-auth-token-0123456789abcdef"
TAVILY_KEY = "tvly-test-key-0123456789"
OPENAI_KEY = "sk-test-0123456789"


@dataclass
class BridgedCall:
    bridge: RunningBridge
    stream: TwilioMediaStream
    session: FakeSession

    @property
    def call_sid(self) -> str:
        return self.stream.target.call_sid

    @property
    def runtime(self) -> Any:
        runtimes = list(self.bridge.calls.runtimes)
        assert len(runtimes) == 1, runtimes
        return runtimes[0]


@asynccontextmanager
async def bridged_call(
    fake: FakeRealtimeServer,
    persona: Persona,
    *,
    rest: FakeTwilioRest | None = None,
    tavily: FakeTavily | None = None,
    **settings: Any,
) -> AsyncIterator[BridgedCall]:
    port = free_port()
    values: dict[str, Any] = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "REALTIME_URL": fake.url,
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        # Nothing listens on port 9: a stray REST request fails loudly instead of leaving.
        "TWILIO_API_BASE_URL": rest.url if rest is not None else "http://127.0.0.1:9",
    }
    if tavily is not None:
        values.update(TAVILY_API_KEY=tavily.api_key, TAVILY_API_BASE_URL=tavily.url)
    values.update(settings)
    async with running_bridge(make_settings(**values), persona, port=port) as bridge:
        target = await place_call(bridge.base_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID)
        async with TwilioMediaStream(target, auth_token=AUTH_TOKEN) as stream:
            session = await fake.wait_for_session()
            await wait_until(lambda: bridge.calls.runtimes, 5, "the call to be set up")
            yield BridgedCall(bridge, stream, session)


def response_creates(session: FakeSession) -> list[dict[str, Any]]:
    return session.client_events("response.create")


def client_types(session: FakeSession) -> list[str]:
    """Client event types in arrival order, without the audio appends."""
    return [e["type"] for e in session.client_events() if e["type"] != "input_audio_buffer.append"]


def function_outputs(session: FakeSession) -> list[dict[str, Any]]:
    return [
        e["item"]
        for e in session.client_events("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]
