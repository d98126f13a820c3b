"""A tiny scriptable Media Stream server for testing the Twilio emulator against."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bridge.sim import StreamTarget

NEXT_TIMEOUT_SECONDS = 3.0
"""Generous: a shared machine can stall, and a real failure still shows within seconds."""


@dataclass
class Arrival:
    time: float
    message: dict[str, Any]


class FakeBridge:
    """Accepts one stream at a time, queues what Twilio sends, lets a test answer."""

    def __init__(self) -> None:
        self.port = 0
        self.arrivals: asyncio.Queue[Arrival] = asyncio.Queue()
        self.log: list[Arrival] = []
        self.ws: ServerConnection | None = None
        self.accepted = asyncio.Event()
        self.finished = asyncio.Event()
        self.close_code: int | None = None
        self.on_accept: Callable[[ServerConnection], Awaitable[None]] | None = None
        self.stream_sid = ""

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/media-stream"

    def target(self, **parameters: str) -> StreamTarget:
        return StreamTarget(
            url=self.url,
            parameters=parameters or {"token": "tok-1"},
            call_sid="CA" + "a" * 32,
            account_sid="AC" + "b" * 32,
            twiml="",
        )

    async def handler(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.accepted.set()
        try:
            if self.on_accept is not None:
                await self.on_accept(ws)
            async for raw in ws:
                arrival = Arrival(time.monotonic(), json.loads(raw))
                if arrival.message.get("event") == "start":
                    self.stream_sid = arrival.message["streamSid"]
                self.log.append(arrival)
                self.arrivals.put_nowait(arrival)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.finished.set()

    async def next(self, event: str) -> Arrival:
        """The next message of kind `event`, skipping others (mostly inbound media)."""
        async with asyncio.timeout(NEXT_TIMEOUT_SECONDS):
            while True:
                arrival = await self.arrivals.get()
                if arrival.message["event"] == event:
                    return arrival

    async def send(self, message: dict[str, Any] | str) -> None:
        assert self.ws is not None
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def send_media(self, payload: bytes) -> None:
        await self.send(
            {
                "event": "media",
                "streamSid": self.stream_sid,
                "media": {"payload": base64.b64encode(payload).decode()},
            }
        )

    async def send_mark(self, name: str) -> None:
        await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def send_clear(self) -> None:
        await self.send({"event": "clear", "streamSid": self.stream_sid})


@pytest.fixture
async def server() -> AsyncIterator[FakeBridge]:
    fake = FakeBridge()
    async with serve(fake.handler, "127.0.0.1", 0, compression=None) as listening:
        fake.port = listening.sockets[0].getsockname()[1]
        yield fake
