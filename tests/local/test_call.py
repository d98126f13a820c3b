"""Whole phone calls against the local engine: the simulator (`voicebridge call`'s code) →
the bridge under uvicorn → the local engine, all over loopback, in real time."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import numpy as np

from bridge.sim import TwilioMediaStream, place_call
from bridge.sim.audio import rms_dbfs
from bridge.sim.cli import run_call, summary, tts_ulaw
from tests.conftest import LogCapture, make_settings, running_bridge
from tests.local.conftest import SEARCH_PERSONA, wait_until


def search_settings(stack: contextlib.ExitStack) -> dict[str, str]:
    """Web search against the fake Tavily, where the fake exists; without it the bridge
    answers the call with its "search unavailable" result, which the agent speaks about."""
    try:
        from tests.fakes.tavily import FakeTavily, result
    except ImportError:
        return {}
    tavily = stack.enter_context(
        FakeTavily(
            "tvly-test-0123456789",
            answer="It is sunny in Paris, 21 degrees.",
            results=[result("Paris weather", "https://example.com", "Sunny, 21 degrees.")],
        )
    )
    return {"TAVILY_API_KEY": "tvly-test-0123456789", "TAVILY_API_BASE_URL": tavily.url}


async def test_a_weather_question_is_searched_and_the_answer_spoken(
    logs: LogCapture, tmp_path: Path
) -> None:
    printed: list[str] = []
    record = tmp_path / "heard.wav"
    with contextlib.ExitStack() as stack:
        settings = make_settings(**search_settings(stack))
        async with running_bridge(settings, SEARCH_PERSONA) as bridge:
            assert (
                bridge.services.upstream.local_engine_url is not None
            )  # the app started the local engine
            report = await run_call(
                bridge.base_url,
                says=["what is the weather in Paris"],
                record=str(record),
                out=printed.append,
            )
            await logs.wait_for("call_ended", 1, timeout=10)

    # The engine recognised the key words and called the tool with the phrase it heard.
    [tool] = logs.events("tool_call")
    assert tool["name"] == "web_search"
    arguments = tool["arguments"]
    query = json.loads(arguments)["query"] if isinstance(arguments, str) else arguments["query"]
    # The intent is recognised; the place name often is not (espeak over μ-law, 8 kHz).
    assert "weather" in query

    # Transcript lines, in order: greeting, the caller, the spoken answer about the search.
    lines = [(x["role"], x["text"]) for x in logs.events("transcript")]
    assert lines[0] == ("agent", "Hello, thanks for calling. How can I help you today?")
    assert lines[1][0] == "caller" and lines[1][1]
    agent_after = [text for role, text in lines[2:] if role == "agent"]
    assert agent_after, lines
    # No TAVILY_API_KEY here: the bridge answers "not configured" and the agent says so;
    # with search configured it reads the result ("Here is what I found").
    assert any(
        t.startswith(("Sorry, I couldn't look that up", "Here is what I found"))
        for t in agent_after
    )

    # What the caller heard: the greeting and the answer, as speech-level audio.
    import wave

    with wave.open(str(record)) as f:
        heard = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
        seconds = f.getnframes() / f.getframerate()
    assert seconds > 4.0
    assert 20 * np.log10(np.sqrt(np.mean(heard.astype(float) ** 2)) / 32768) > -35

    assert report.turns == 1 and report.barge_ins == 0
    assert report.first_audio_s is not None and report.first_audio_s < 2.0
    assert len(report.agent_lines) == 2  # greeting and answer, as the simulator heard them
    text = "\n".join(printed) + "\n" + summary(report, str(record))
    assert "caller : what is the weather in Paris" in text
    assert "time to first agent audio" in text


async def test_the_caller_barges_in_on_the_greeting(logs: LogCapture) -> None:
    async with running_bridge(make_settings(), SEARCH_PERSONA) as bridge:
        target = await place_call(bridge.base_url)
        async with TwilioMediaStream(target) as stream:
            await wait_until(lambda: stream.played_ms_total > 800, 5, "the greeting to play")
            stream.say(tts_ulaw("goodbye"))
            await wait_until(lambda: stream.clears, 5, "the bridge to clear the greeting")
            [barge] = await logs.wait_for("barge_in", 1, timeout=5)
            # The engine then answers what the caller said (whatever it understood).
            await logs.wait_for("transcript", 3, timeout=15)
        await logs.wait_for("call_ended", 1, timeout=10)

    clear = stream.clears[0]
    greeting = logs.events("transcript")[0]
    assert greeting["role"] == "agent" and greeting["interrupted"] is True
    # The bridge truncated the greeting at what the caller heard (20 ms frames, one of slack).
    assert abs(greeting["played_ms"] - barge["played_ms"]) <= 20
    assert barge["played_ms"] >= 800 and clear is not None
    assert rms_dbfs(stream.heard_audio()) > -40
    # The engine cancelled its own response (server VAD, interrupt_response) and answered
    # the caller's turn: "goodbye" ends the call through the end_call tool.
    roles = [x["role"] for x in logs.events("transcript")]
    assert roles[:2] == ["agent", "caller"]
    assert [t["name"] for t in logs.events("tool_call")] == ["end_call"]


async def test_each_caller_line_follows_the_agents_last_audio_within_a_second(
    logs: LogCapture,
) -> None:
    """No dead air: the simulator answers once the agent has been quiet for its pause and
    transcribes what it heard beside the call, not in between."""
    async with running_bridge(make_settings()) as bridge:  # make run's provider: local
        report = await run_call(
            bridge.base_url, says=["hello", "what can you do"], out=lambda _line: None
        )
        await logs.wait_for("call_ended", 1, timeout=10)

    assert report.turns == 2 and len(report.caller_speech_at) == 2
    assert len(report.agent_lines) == 3  # the greeting and both answers, transcribed
    for speech_at in report.caller_speech_at:
        agent_end = max(end for _start, end in report.agent_spans if end <= speech_at)
        assert 0.0 < speech_at - agent_end < 1.0, (speech_at, report.agent_spans)
    # The call is the agent's audio and the caller's lines with short pauses between them.
    spoken = sum(end - start for start, end in report.agent_spans)
    lines = sum(len(tts_ulaw(text)) / 8000 for text in report.caller_lines)
    replies = sum(report.reply_latencies_s)
    assert report.duration_s < spoken + lines + replies + 3 * 1.0


async def test_the_keypad_with_the_default_persona_answers_every_key(logs: LogCapture) -> None:
    """`--dtmf 12#` as the banner suggests: the default persona has no menu, so each key
    reaches the model; keys pressed together get one answer naming them all."""
    async with running_bridge(make_settings()) as bridge:  # the built-in default persona
        report = await run_call(bridge.base_url, dtmf="12#", out=lambda _line: None)
        await logs.wait_for("call_ended", 1, timeout=10)

    assert [d["digit"] for d in logs.events("dtmf")] == ["1", "2", "#"]
    agent = [t["text"] for t in logs.events("transcript") if t["role"] == "agent"][1:]
    assert "".join(agent).count("You pressed") == len(agent) >= 1
    named = " ".join(agent)
    assert all(key in named for key in ("1", "2", "pound")) and ".." not in named
    assert agent[-1].endswith("on the keypad. How can I help?")
    [latency] = report.reply_latencies_s
    assert 0.0 < latency < 5.0


async def test_a_failed_transfer_is_apologised_for(logs: LogCapture) -> None:
    """Twilio refuses the REST redirect, so the stream's end dials instead (the `<Connect>`
    action); nobody answers, and the caller comes back to the local engine on a new stream,
    which apologises instead of greeting again."""
    from bridge.sim import continue_after_stream, dial_ends
    from bridge.sim.cli import _stream_url_on
    from tests.fakes.twilio_rest import FakeTwilioRest
    from tests.tools.helpers import ACCOUNT_SID, AUTH_TOKEN

    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN, fail_status=500) as rest:
        settings = make_settings(
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_API_BASE_URL=rest.url,
            PUBLIC_URL="https://voice.example.com",
        )
        async with running_bridge(settings, SEARCH_PERSONA) as bridge:
            target = await place_call(
                bridge.base_url, auth_token=AUTH_TOKEN, sign_base="https://voice.example.com"
            )
            connect = _stream_url_on(bridge.base_url, target.url)
            async with TwilioMediaStream(
                target, auth_token=AUTH_TOKEN, connect_url=connect
            ) as stream:
                await logs.wait_for("transcript", 1, timeout=10)  # the greeting
                stream.say(tts_ulaw("operator"))
                [control] = await logs.wait_for("call_control", 1, timeout=25)
                await asyncio.wait_for(stream.closed, 10)
            local = bridge.base_url
            after = await continue_after_stream(
                target,
                auth_token=AUTH_TOKEN,
                post_url=f"{local}/stream-ended",
                sign_url=target.action,
            )
            assert after.dialed is not None  # Twilio dials what REST could not
            back = await dial_ends(
                after, target, "no-answer", auth_token=AUTH_TOKEN, post_base=local
            )
            assert back.reconnect is not None
            again_url = _stream_url_on(bridge.base_url, back.reconnect.url)
            async with TwilioMediaStream(
                back.reconnect, auth_token=AUTH_TOKEN, connect_url=again_url
            ):
                await wait_until(
                    lambda: (
                        len([t for t in logs.events("transcript") if t["role"] == "agent"]) >= 3
                    ),
                    15,
                    "the apology",
                )
        await logs.wait_for("call_ended", 2, timeout=10)

    assert [t["name"] for t in logs.events("tool_call")] == ["transfer_call"]
    assert (control["action"], control["ok"], control["http_status"]) == ("transfer", False, 500)
    agent = [t["text"] for t in logs.events("transcript") if t["role"] == "agent"]
    assert agent[2] == (
        "Sorry, the transfer to operator didn't go through. "
        "Is there anything else I can help you with?"
    )
