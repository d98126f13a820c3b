"""The local engine on its own: the official `openai` client holds a session with it, every
event it sends validates, and it hears, decides and speaks as the policy says."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from openai import AsyncOpenAI

from bridge.engine.local import LocalEngine
from bridge.engine.tts import CALLER_WPM, speak
from tests.conformance import validate_server_event

FRAME = 480  # 20 ms at 24 kHz


def caller_audio(text: str) -> np.ndarray:
    """`text` as the engine receives it from a caller: speech, then a second of silence."""
    pcm = speak(text, wpm=CALLER_WPM)
    return np.concatenate([np.zeros(4800, np.int16), pcm, np.zeros(24000, np.int16)])


async def test_the_openai_client_holds_a_session_and_every_event_validates() -> None:
    async with LocalEngine(speed=8.0) as engine:
        client = AsyncOpenAI(
            api_key="x", websocket_base_url=f"ws://127.0.0.1:{engine.server.port}/v1"
        )
        seen: list[dict[str, Any]] = []
        problems: list[str] = []
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(
                session={
                    "type": "realtime",
                    "audio": {"input": {"transcription": {"model": "whisper-1"}}},
                    "tools": [
                        {
                            "type": "function",
                            "name": "web_search",
                            "description": "search",
                            "parameters": {
                                "type": "object",
                                "properties": {"query": {"type": "string"}},
                            },
                        }
                    ],
                }
            )
            await conn.response.create(
                response={"instructions": 'Say exactly: "Hello, how can I help?"'}
            )
            spoke = False
            async for event in conn:
                raw = event.model_dump(mode="json", exclude_unset=True)
                seen.append(raw)
                problems += [f"{event.type}: {p}" for p in validate_server_event(raw, "ga")]
                if event.type == "response.done" and not spoke:
                    spoke = True
                    pcm = caller_audio("what is the weather in Paris")
                    for i in range(0, len(pcm), FRAME):
                        chunk = pcm[i : i + FRAME].astype("<i2").tobytes()
                        await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                if event.type == "response.function_call_arguments.done":
                    break
    assert problems == []
    types = [e["type"] for e in seen]
    assert types[:2] == ["session.created", "session.updated"]
    greeting = next(e for e in seen if e["type"] == "response.output_audio_transcript.done")
    assert greeting["transcript"] == "Hello, how can I help?"
    audio_ms = sum(
        len(base64.b64decode(e["delta"])) / 48
        for e in seen
        if e["type"] == "response.output_audio.delta"
    )
    assert audio_ms > 1000  # the greeting was spoken, not just written
    for expected in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
    ):
        assert expected in types
    call = next(e for e in seen if e["type"] == "response.function_call_arguments.done")
    assert call["name"] == "web_search"
    assert "weather" in json.loads(call["arguments"])["query"]


async def test_a_cancel_with_no_response_is_the_service_error_and_the_session_lives_on() -> None:
    async with LocalEngine(speed=8.0) as engine:
        client = AsyncOpenAI(
            api_key="x", websocket_base_url=f"ws://127.0.0.1:{engine.server.port}/v1"
        )
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.response.cancel()
            await conn.response.create(response={"instructions": 'Say "Still here."'})
            errors, transcript = [], None
            async for event in conn:
                if event.type == "error":
                    errors.append(event.error.code)
                if event.type == "response.output_audio_transcript.done":
                    transcript = event.transcript
                if event.type == "response.done":
                    break
    assert errors == ["response_cancel_not_active"]
    assert transcript == "Still here."
