"""The engine's WebSocket adapter as the product uses it: plug-ins, dialect choice, failures."""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

import numpy as np
import orjson
import pytest
import websockets

from bridge.engine import RealtimeServer, ResponseRequest, SessionSetup, Speech
from bridge.engine.items import MessageItem
from bridge.engine.voice import tone
from tests.conformance import validate_server_event


class Echo:
    """Repeats the caller's last words; records what it was shown."""

    def __init__(self) -> None:
        self.requests: list[ResponseRequest] = []

    def respond(self, request: ResponseRequest) -> list[Speech]:
        self.requests.append(request)
        last = request.conversation[-1] if request.conversation else None
        heard = last.text if isinstance(last, MessageItem) else ""
        return [Speech(f"You said: {heard}")]


class SlowTranscriber:
    async def transcribe(self, audio: Any, *, item_id: str) -> str:
        await asyncio.sleep(0.05)
        return "book a table"


class Broken:
    def respond(self, request: ResponseRequest) -> list[Speech]:
        raise RuntimeError("model unavailable")


async def recv_until(ws: Any, type: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    events = []
    async with asyncio.timeout(timeout):
        while True:
            events.append(orjson.loads(await ws.recv()))
            if events[-1]["type"] == type:
                return events


async def first_session(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        return orjson.loads(await ws.recv())


async def test_dialect_follows_the_client_when_auto() -> None:
    async with RealtimeServer(SessionSetup(Echo()), dialect="auto") as server:
        base = f"ws://127.0.0.1:{server.port}"
        ga = await first_session(f"{base}/v1/realtime?model=gpt-realtime")
        beta_header = await first_session(
            f"{base}/v1/realtime?model=gpt-4o-realtime-preview", {"OpenAI-Beta": "realtime=v1"}
        )
        azure_preview = await first_session(
            f"{base}/openai/realtime?api-version=2025-04-01-preview&deployment=rt"
        )
    assert ga["session"]["type"] == "realtime"
    assert ga["session"]["model"] == "gpt-realtime"  # named after the URL, like the service
    assert beta_header["session"]["input_audio_format"] == "pcm16"
    assert beta_header["session"]["model"] == "gpt-4o-realtime-preview"
    assert "type" not in azure_preview["session"]
    assert [c.dialect for c in server.connections] == ["ga", "beta", "beta"]


async def test_speech_without_audio_is_synthesized_by_the_voice() -> None:
    server = RealtimeServer(SessionSetup(Echo()), speed=math.inf)
    async with server, websockets.connect(server.url) as ws:
        await ws.send('{"type": "response.create"}')
        events = await recv_until(ws, "response.done")
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    # ToneVoice: 70 ms per character, at least 300 ms; "You said: " is 10 characters.
    assert len(audio) == 700 * 48
    assert all(validate_server_event(e, "ga") == [] for e in events)


async def test_responder_failure_ends_the_response_failed_and_the_session_goes_on() -> None:
    server = RealtimeServer(SessionSetup(Broken()), speed=math.inf)
    async with server, websockets.connect(server.url) as ws:
        await ws.send('{"type": "response.create"}')
        done = (await recv_until(ws, "response.done"))[-1]["response"]
        assert done["status"] == "failed"
        assert done["status_details"]["error"]["message"] == "model unavailable"
        await ws.send('{"type": "input_audio_buffer.clear"}')
        assert (await recv_until(ws, "input_audio_buffer.cleared"))[-1]


class Mute:
    """A broken voice plug-in: no audio at all, which the session refuses to plan."""

    def synthesize(self, text: str, *, voice: str) -> Any:
        return None


async def test_a_crashed_session_task_closes_the_connection_with_1011_and_the_server_goes_on(
    caplog: Any,
) -> None:
    server = RealtimeServer(SessionSetup(Echo(), voice=Mute()), speed=math.inf)
    async with server:
        async with websockets.connect(server.url) as ws:
            await recv_until(ws, "session.created")
            await ws.send('{"type": "response.create"}')
            with pytest.raises(websockets.ConnectionClosedError) as info:
                await recv_until(ws, "response.done")
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1011, "server error")
        assert "realtime session task failed" in caplog.text
        assert "Speech outputs need audio before they are planned" in caplog.text
        assert (await first_session(server.url))["type"] == "session.created"


async def test_a_local_responder_hears_the_transcript_of_the_turn() -> None:
    echo = Echo()
    setup = SessionSetup(echo, transcriber=SlowTranscriber())
    server = RealtimeServer(setup, speed=math.inf, await_transcripts=True)
    turn = np.concatenate([tone(600, hz=300), np.zeros(700 * 24, dtype=np.int16)])
    async with server, websockets.connect(server.url) as ws:
        for i in range(0, len(turn), 480):
            chunk = base64.b64encode(turn[i : i + 480].tobytes()).decode()
            await ws.send(orjson.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        events = await recv_until(ws, "response.done")
    said = events[-1]["response"]["output"][0]["content"][0]["transcript"]
    assert said == "You said: book a table"
    # Transcription was not configured by the client, so no transcript event was sent.
    assert not any("transcription" in e["type"] for e in events)


async def test_connections_are_not_recorded_unless_asked() -> None:
    async with RealtimeServer(SessionSetup(Echo())) as server:
        await first_session(server.url)
        connection = await server.wait_for_connection()
        await connection.wait_closed()
    assert connection.records == []
    assert connection.session is not None and connection.closed
