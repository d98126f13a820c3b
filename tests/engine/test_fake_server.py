"""The fake upstream over a real WebSocket, spoken to by a plain client (no bridge).

Each test ends by checking that every server event the fake sent validates against the
openai server-event models of its dialect.
"""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

import numpy as np
import openai
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from bridge.engine.codec import ulaw_encode
from bridge.engine.voice import tone
from tests.conformance import DialectName, validate_server_event
from tests.fakes.realtime import FakeRealtimeServer, FunctionCall, Say

GA_TRANSCRIBED = {
    "type": "session.update",
    "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}},
}


class Client:
    """A bare Realtime client: sends events, reads until a type arrives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(event).decode())

    async def until(self, type: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                event = orjson.loads(await self.ws.recv())
                events.append(event)
                self.seen.append(event)
                if event["type"] == type:
                    return events

    async def speak(self, audio: bytes, bytes_per_20ms: int) -> None:
        for i in range(0, len(audio), bytes_per_20ms):
            chunk = base64.b64encode(audio[i : i + bytes_per_20ms]).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": chunk})


def silence(ms: int) -> np.ndarray:
    return np.zeros(ms * 24, dtype=np.int16)


def turn_pcm16() -> bytes:
    """Half a second of silence, 600 ms of speech-like tone, a second of silence."""
    return np.concatenate([silence(500), tone(600, hz=300), silence(1000)]).astype("<i2").tobytes()


def audio_bytes(events: list[dict[str, Any]], kind: str = "response.output_audio.delta") -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == kind)


def assert_conforms(fake: FakeRealtimeServer) -> None:
    dialect: DialectName = fake.dialect
    for session in fake.sessions:
        assert session.sent, "nothing was sent"
        for event in session.server_events():
            assert validate_server_event(event, dialect) == [], event


def by_type(events: list[dict[str, Any]], type: str) -> dict[str, Any]:
    return next(e for e in events if e["type"] == type)


# --- handshakes -------------------------------------------------------------------------------


async def test_ga_handshake_records_path_query_and_headers() -> None:
    async with FakeRealtimeServer("ga") as fake:
        url = f"ws://127.0.0.1:{fake.port}/v1/realtime?model=gpt-realtime"
        headers = {"Authorization": "Bearer sk-test"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            first = orjson.loads(await ws.recv())
        assert first["type"] == "session.created"
        assert first["session"]["type"] == "realtime"
        session = await fake.wait_for_session()
        assert (session.path, session.query) == ("/v1/realtime", {"model": "gpt-realtime"})
        assert session.headers["authorization"] == "Bearer sk-test"
        assert "OpenAI-Beta" not in session.headers
        assert fake.url == f"ws://127.0.0.1:{fake.port}/v1/realtime"
        assert_conforms(fake)


async def test_beta_handshake_on_an_azure_preview_url() -> None:
    async with FakeRealtimeServer("beta") as fake:
        url = (
            f"ws://127.0.0.1:{fake.port}/openai/realtime"
            "?api-version=2024-10-01-preview&deployment=my-realtime"
        )
        async with websockets.connect(url, additional_headers={"api-key": "k"}) as ws:
            first = orjson.loads(await ws.recv())
        assert first["type"] == "session.created"
        assert first["session"]["input_audio_format"] == "pcm16"
        session = await fake.wait_for_session()
        assert session.path == "/openai/realtime"
        assert session.query == {"api-version": "2024-10-01-preview", "deployment": "my-realtime"}
        assert session.headers["api-key"] == "k"
        assert_conforms(fake)


async def test_azure_ga_url_is_accepted_and_recorded() -> None:
    async with FakeRealtimeServer("ga") as fake:
        url = f"ws://127.0.0.1:{fake.port}/openai/v1/realtime?model=my-deployment"
        async with websockets.connect(url) as ws:
            await ws.recv()
        session = await fake.wait_for_session()
        assert (session.path, session.query) == ("/openai/v1/realtime", {"model": "my-deployment"})


# --- configuration ----------------------------------------------------------------------------


async def test_session_update_is_validated_against_the_dialect() -> None:
    async with FakeRealtimeServer("ga") as fake, websockets.connect(fake.url) as ws:
        client = Client(ws)
        await client.until("session.created")
        await client.send({"type": "session.update", "session": {"voice": "alloy"}})
        error = (await client.until("error"))[-1]
        assert error["error"]["param"] == "session.type"
        await client.send(GA_TRANSCRIBED)
        updated = (await client.until("session.updated"))[-1]
        assert updated["session"]["audio"]["input"]["transcription"] == {"model": "whisper-1"}
        session = fake.sessions[0]
        assert session.violations == ["session.update: missing required field session.type"]
        assert session.config.transcription is not None
        assert_conforms(fake)


# --- caller turns -----------------------------------------------------------------------------


async def test_speech_turn_gets_the_scripted_response_pcm16() -> None:
    fake = FakeRealtimeServer(
        "ga", script=[[Say("Sure, a plumber.", 800)]], transcripts=["I need a plumber"]
    )
    async with fake, websockets.connect(fake.url) as ws:
        client = Client(ws)
        await client.until("session.created")
        await client.send(GA_TRANSCRIBED)
        await client.until("session.updated")
        await client.speak(turn_pcm16(), 960)
        events = await client.until("response.done")
        if not any(e["type"].endswith("transcription.completed") for e in events):
            events += await client.until("conversation.item.input_audio_transcription.completed")
        started = by_type(events, "input_audio_buffer.speech_started")
        stopped = by_type(events, "input_audio_buffer.speech_stopped")
        committed = by_type(events, "input_audio_buffer.committed")
        transcript = by_type(events, "conversation.item.input_audio_transcription.completed")
        assert (started["audio_start_ms"], stopped["audio_end_ms"]) == (200, 1600)
        assert started["item_id"] == committed["item_id"] == transcript["item_id"]
        assert transcript["transcript"] == "I need a plumber"
        assert len(audio_bytes(events)) == 800 * 24 * 2  # exactly ms * 24 samples
        done = by_type(events, "response.done")["response"]
        assert done["status"] == "completed"
        assert done["output"][0]["content"][0]["transcript"] == "Sure, a plumber."
        assert fake.sessions[0].violations == []
        assert_conforms(fake)


async def test_a_delayed_transcript_arrives_after_the_response() -> None:
    fake = FakeRealtimeServer(
        "ga", script=[[Say("Okay.", 200)]], transcripts=["hello"], transcript_delay_s=0.2
    )
    async with fake, websockets.connect(fake.url) as ws:
        client = Client(ws)
        await client.send(GA_TRANSCRIBED)
        await client.speak(turn_pcm16(), 960)
        events = await client.until("conversation.item.input_audio_transcription.completed")
        kinds = [e["type"] for e in events]
        assert kinds.index("response.done") < kinds.index(
            "conversation.item.input_audio_transcription.completed"
        )
        assert events[-1]["transcript"] == "hello"


async def test_caller_can_barge_in_before_any_audio() -> None:
    fake = FakeRealtimeServer("ga", script=[[Say("Late.", 500)]], response_delay_s=0.5)
    async with fake, websockets.connect(fake.url) as ws:
        client = Client(ws)
        await client.send({"type": "response.create"})
        await client.until("response.created")
        await client.speak(tone(200, hz=300).tobytes(), 960)
        events = await client.until("response.done")
        assert events[-1]["response"]["status"] == "cancelled"
        assert events[-1]["response"]["output"] == []
        assert "response.output_audio.delta" not in [e["type"] for e in client.seen]


async def test_speech_turn_in_mulaw_gets_mulaw_audio() -> None:
    fake = FakeRealtimeServer("beta", script=[[Say("Hello.", 640)]])
    async with fake, websockets.connect(fake.url) as ws:
        client = Client(ws)
        await client.until("session.created")
        await client.send(
            {
                "type": "session.update",
                "session": {"input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw"},
            }
        )
        await client.until("session.updated")
        caller = np.concatenate([np.zeros(4000), tone(600, sample_rate=8000), np.zeros(8000)])
        await client.speak(ulaw_encode(caller.astype(np.int16)), 160)
        events = await client.until("response.done")
        started = by_type(events, "input_audio_buffer.speech_started")
        stopped = by_type(events, "input_audio_buffer.speech_stopped")
        assert started["audio_start_ms"] == pytest.approx(200, abs=20)
        assert stopped["audio_end_ms"] == pytest.approx(1600, abs=20)
        assert len(audio_bytes(events, "response.audio.delta")) == 640 * 8
        assert fake.sessions[0].violations == []
        assert_conforms(fake)


async def test_caller_speech_interrupts_and_the_server_cancels() -> None:
    fake = FakeRealtimeServer("ga", script=[[Say("A long greeting.", 3000)]], speed=1.0)
    async with fake, websockets.connect(fake.url) as ws:
        client = Client(ws)
        await client.until("session.created")
        await client.send({"type": "response.create"})
        await client.until("response.output_audio.delta")
        await client.speak(tone(300, hz=300).tobytes(), 960)
        events = await client.until("response.done")
        done = events[-1]["response"]
        assert (done["status"], done["status_details"]) == (
            "cancelled",
            {"type": "cancelled", "reason": "turn_detected"},
        )
        assert done["output"][0]["status"] == "incomplete"
        assert "input_audio_buffer.speech_started" in [e["type"] for e in events]
        session = fake.sessions[0]
        sent = [r.type for r in session.sent]
        after_done = sent[sent.index("response.done") :]
        assert "response.output_audio.delta" not in after_done  # audio stopped at once
        assert session.conversation[0].content[0].audio_ms < 1000
        assert session.violations == []
        assert_conforms(fake)


# --- misuse is answered and recorded ----------------------------------------------------------


async def test_response_cancel_without_active_response_is_an_error_and_a_violation() -> None:
    async with FakeRealtimeServer("ga") as fake, websockets.connect(fake.url) as ws:
        client = Client(ws)
        await client.until("session.created")
        await client.send({"type": "response.cancel"})
        error = (await client.until("error"))[-1]
        assert error["error"]["code"] == "response_cancel_not_active"
        assert fake.sessions[0].violations == [
            "response.cancel: response_cancel_not_active: "
            "Cancellation failed: no active response found"
        ]
        assert_conforms(fake)


async def test_cancel_crossing_a_response_done_is_excused() -> None:
    async with FakeRealtimeServer("ga", script=[[Say("Hi", 100)]]) as fake:
        async with websockets.connect(fake.url) as ws:
            client = Client(ws)
            await client.send({"type": "response.create"})
            await client.until("response.done")
            await client.send({"type": "response.cancel"})
            await client.until("error")
        session = fake.sessions[0]
        assert session.violations == []
        assert len(session.excused) == 1


async def test_response_create_while_active_is_an_error_and_a_violation() -> None:
    fake = FakeRealtimeServer("ga", script=[[Say("Long answer", 2000)]], speed=1.0)
    async with fake, websockets.connect(fake.url) as ws:
        client = Client(ws)
        await client.send({"type": "response.create"})
        await client.until("response.output_audio.delta")
        await client.send({"type": "response.create"})
        events = await client.until("error")
        assert events[-1]["error"]["code"] == "conversation_already_has_active_response"
        [violation] = fake.sessions[0].violations
        assert violation.startswith("response.create: conversation_already_has_active_response")
        assert_conforms(fake)


async def test_truncate_beyond_the_audio_is_an_error_and_a_violation() -> None:
    async with FakeRealtimeServer("ga", script=[[Say("Hello", 1234)]]) as fake:
        async with websockets.connect(fake.url) as ws:
            client = Client(ws)
            await client.send({"type": "response.create"})
            events = await client.until("response.done")
            item_id = by_type(events, "response.output_item.added")["item"]["id"]
            await client.send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": 1500,
                }
            )
            error = (await client.until("error"))[-1]
        assert error["error"]["message"] == "Audio content of 1234ms is already shorter than 1500ms"
        assert fake.sessions[0].violations == [
            "conversation.item.truncate: invalid_value: "
            "Audio content of 1234ms is already shorter than 1500ms"
        ]
        assert_conforms(fake)


async def test_truncate_within_the_audio_is_acknowledged() -> None:
    async with FakeRealtimeServer("ga", script=[[Say("one two three four", 1000)]]) as fake:
        async with websockets.connect(fake.url) as ws:
            client = Client(ws)
            await client.send({"type": "response.create"})
            events = await client.until("response.done")
            item_id = by_type(events, "response.output_item.added")["item"]["id"]
            truncate = {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 500,
            }
            await client.send(truncate)
            truncated = (await client.until("conversation.item.truncated"))[-1]
        assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 500)
        session = fake.sessions[0]
        part = session.conversation[0].content[0]
        assert (part.audio_ms, part.transcript) == (500, "one two")
        assert session.violations == []
        assert_conforms(fake)


async def test_unknown_field_in_a_client_event_is_a_violation() -> None:
    async with FakeRealtimeServer("ga") as fake, websockets.connect(fake.url) as ws:
        client = Client(ws)
        await client.send({"type": "input_audio_buffer.clear", "extra": 1})
        await client.until("error")
        assert fake.sessions[0].violations == ["input_audio_buffer.clear: unknown field extra"]


# --- tools ------------------------------------------------------------------------------------


async def test_function_call_round_trip() -> None:
    script = [
        [FunctionCall("lookup", {"q": "plumber"}, "call_A"), FunctionCall("hours", {}, "call_B")],
        [Say("We open at nine.", 500)],
    ]
    async with FakeRealtimeServer("ga", script=script) as fake, websockets.connect(fake.url) as ws:
        client = Client(ws)
        await client.send({"type": "response.create"})
        events = await client.until("response.done")
        calls = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert [(c["call_id"], c["name"], c["arguments"]) for c in calls] == [
            ("call_A", "lookup", '{"q": "plumber"}'),
            ("call_B", "hours", "{}"),
        ]
        for call in calls:
            output = {"type": "function_call_output", "call_id": call["call_id"], "output": "{}"}
            await client.send({"type": "conversation.item.create", "item": output})
            await client.until("conversation.item.done")
        await client.send({"type": "response.create"})
        events = await client.until("response.done")
        assert events[-1]["response"]["output"][0]["content"][0]["transcript"] == "We open at nine."
        session = fake.sessions[0]
        kinds = [type(item).__name__ for item in session.requests[1].conversation]
        assert kinds == ["FunctionCallItem"] * 2 + ["FunctionCallOutputItem"] * 2
        assert session.violations == []
        assert_conforms(fake)


# --- pacing and faults ------------------------------------------------------------------------


async def test_audio_is_paced_by_speed() -> None:
    async with FakeRealtimeServer("ga", script=[[Say("Paced", 1000)]], speed=4.0) as fake:
        async with websockets.connect(fake.url) as ws:
            client = Client(ws)
            await client.send({"type": "response.create"})
            await client.until("response.done")
        deltas = [r.time for r in fake.sessions[0].sent if r.type == "response.output_audio.delta"]
        # Ten 100 ms chunks at four times real time: the last is sent >= 225 ms after the first.
        assert len(deltas) == 10
        assert deltas[-1] - deltas[0] >= 0.2


async def test_close_all_drops_connections_abruptly() -> None:
    async with FakeRealtimeServer("ga") as fake, websockets.connect(fake.url) as ws:
        await ws.recv()
        await fake.close_all()
        with pytest.raises(ConnectionClosedError) as closed:
            await asyncio.wait_for(ws.recv(), 2)
        assert closed.value.rcvd is None  # no close frame: a dropped TCP connection
        await fake.sessions[0].wait_closed()


async def test_server_restarts_on_the_same_port() -> None:
    fake = FakeRealtimeServer("ga")
    async with fake:
        port = fake.port
    with pytest.raises(OSError):
        await websockets.connect(fake.url)
    async with fake:
        assert fake.port == port
        async with websockets.connect(fake.url) as ws:
            assert orjson.loads(await ws.recv())["type"] == "session.created"
    assert len(fake.sessions) == 1


async def test_stop_closes_live_sessions() -> None:
    fake = FakeRealtimeServer("ga")
    await fake.start()
    async with websockets.connect(fake.url) as ws:
        await ws.recv()
        await fake.stop()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2)


async def test_wait_for_event_sees_client_and_server_events() -> None:
    async with FakeRealtimeServer("ga", script=[[Say("Hi", 200)]]) as fake:
        async with websockets.connect(fake.url) as ws:
            session = await fake.wait_for_session()
            await ws.send('{"type": "response.create", "event_id": "evt_1"}')
            created = await session.wait_for_event("response.create")
            done = await session.wait_for_event("response.done")
        assert created["event_id"] == "evt_1"
        assert done["response"]["status"] == "completed"
        with pytest.raises(TimeoutError):
            await session.wait_for_event("response.done", timeout=0.05, nth=2)


# --- the official client ----------------------------------------------------------------------


async def test_official_openai_client_holds_a_session() -> None:
    async with FakeRealtimeServer("ga", script=[[Say("Hello from the fake.", 300)]]) as fake:
        client = openai.AsyncOpenAI(
            api_key="x", websocket_base_url=f"ws://127.0.0.1:{fake.port}/v1"
        )
        seen: list[str] = []
        async with client.realtime.connect(model="gpt-realtime") as connection:
            await connection.session.update(
                session={
                    "type": "realtime",
                    "instructions": "Be brief.",
                    "audio": {"output": {"voice": "marin"}},
                }
            )
            await connection.response.create()
            async with asyncio.timeout(5):
                async for event in connection:
                    seen.append(event.type)
                    if event.type == "response.done":
                        assert event.response.status == "completed"
                        break
        assert seen[:2] == ["session.created", "session.updated"]
        assert "response.output_audio.delta" in seen
        session = fake.sessions[0]
        assert session.query == {"model": "gpt-realtime"}
        assert session.headers["authorization"] == "Bearer x"
        assert session.config.instructions == "Be brief."
        assert session.violations == []
        assert_conforms(fake)


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FakeRealtimeServer("ga", speed=0)
    assert math.isinf(FakeRealtimeServer("ga").speed)
