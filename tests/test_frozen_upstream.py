"""A frozen upstream (its socket open, nothing arriving, pings unanswered) is found within
3 s while the bridge expects a response, and replaced by the reconnect path, instead of
dead air until TCP gives up. The fake is a proxy in front of the Realtime fake that freezes
its first connection the way a hung server or a black-holed path does: it stops sending and
stops reading (so pings go unanswered) right after the bridge asks for a response."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from bridge.sim import TwilioMediaStream, place_call
from tests.conftest import LogCapture, make_settings, running_bridge, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say


class FreezingProxy:
    """Forwards Realtime sessions to `target`; the first one freezes after `response.create`."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.connections = 0
        self.frozen_at: float | None = None
        self.url = ""

    async def handle(self, client: ServerConnection) -> None:
        self.connections += 1
        freeze = self.connections == 1
        async with connect(self.target, max_size=None) as upstream:

            async def up() -> None:
                async for message in client:
                    await upstream.send(message)
                    if freeze and '"response.create"' in str(message):
                        self.frozen_at = time.monotonic()
                        client.transport.pause_reading()  # pings now go unanswered
                        return

            async def down() -> None:
                async for message in upstream:
                    if self.frozen_at is not None and freeze:
                        continue  # nothing more reaches the bridge
                    await client.send(message)

            tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
            try:
                await client.wait_closed()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_frozen_upstream_is_replaced_within_3_s(logs: LogCapture) -> None:
    script: list[Any] = [[Say("Hello there.", 600)], [Say("Hello again.", 600)]]
    async with FakeRealtimeServer("ga", script) as fake:
        proxy = FreezingProxy(fake.url)
        async with serve(proxy.handle, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            settings = make_settings(
                OPENAI_API_KEY="sk-test-0123456789",
                REALTIME_URL=f"ws://127.0.0.1:{port}/v1/realtime",
            )
            async with running_bridge(settings) as bridge:
                target = await place_call(bridge.base_url)
                async with TwilioMediaStream(target) as stream:
                    await wait_until(lambda: proxy.frozen_at is not None, 5, "the freeze")
                    await logs.wait_for("upstream_reconnected", timeout=6)
                    reconnected_at = time.monotonic()
                    await wait_until(lambda: stream.played_ms_total >= 600, 5, "the answer")
                await wait_until(lambda: bridge.calls.active_calls == 0, 3, "the end")
    assert proxy.frozen_at is not None
    assert reconnected_at - proxy.frozen_at < 3.5
    (frozen,) = logs.events("upstream_frozen")
    assert 2500 <= frozen["silent_ms"] < 3100
    assert proxy.connections == 2
    assert logs.events("call_ended")[0]["reason"] == "caller_hangup"
