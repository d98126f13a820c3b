"""A real call's data reaching the business, over loopback sockets: the recording lines up
with what the fake caller said and heard, and the call's events arrive, signed.

The fake caller plays the agent's audio in real time and records when each chunk played;
the recording's channels are cross-correlated against the caller's own microphone frames
(placed at the time they were sent) and the audio it played (at the time it played): the
best lag must be within one 20 ms frame, and the audio a barge-in's `clear` cut must not be
in the file.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import wave
from pathlib import Path

import httpx
import numpy as np
from scipy.signal import correlate
from twilio.request_validator import RequestValidator

from bridge import signing
from bridge.audio.g711 import ulaw_decode
from bridge.persona import DEFAULT_PERSONA
from bridge.sim import TwilioMediaStream, place_call
from bridge.sim.audio import speech_like
from tests.conftest import LogCapture, bridged_call, make_settings, running_bridge, wait_until
from tests.fakes.events import FakeEventReceiver
from tests.fakes.realtime import FakeRealtimeServer, FunctionCall, Say
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.tools import helpers

SECRET = "whsec-test-0123456789"
RATE = 8000
FRAME = 160  # samples in 20 ms
TWILIO_SIG = "X-Twilio-Signature"


def read_wav(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, RATE)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    return pcm[0::2], pcm[1::2]


def timeline(pieces: list[tuple[float, bytes]], t0: float, length: int) -> np.ndarray:
    """μ-law pieces placed at their times (seconds, monotonic) from `t0`, as PCM."""
    out = np.zeros(length, dtype=np.float64)
    for at, ulaw in pieces:
        start = round((at - t0) * RATE)
        pcm = ulaw_decode(ulaw).astype(np.float64)
        if 0 <= start < length:
            out[start : start + len(pcm)] = pcm[: length - start]
    return out


def envelope(pcm: np.ndarray) -> np.ndarray:
    """|pcm| averaged over 2.5 ms: the loudness over time, without the waveform's phase."""
    return np.convolve(np.abs(pcm), np.ones(20) / 20, mode="same")


def best_lag(recorded: np.ndarray, expected: np.ndarray) -> tuple[int, float]:
    """The shift of `recorded` against `expected` (samples) with the highest correlation,
    and that correlation, normalised (1.0: identical)."""
    xcorr = correlate(recorded, expected, mode="full", method="fft")
    peak = int(np.argmax(xcorr))
    norm = float(np.sqrt(np.dot(recorded, recorded) * np.dot(expected, expected)))
    return peak - (len(expected) - 1), float(xcorr[peak]) / norm


async def test_the_recording_lines_up_with_what_was_said_and_heard_without_the_cleared_audio(
    logs: LogCapture, tmp_path: Path
) -> None:
    script = [[Say("A long greeting the caller will cut short.", 3000)], [Say("Yes?", 600)]]
    with FakeEventReceiver() as receiver:
        async with FakeRealtimeServer("ga", script, ["hello"]) as fake:
            async with bridged_call(
                fake,
                RECORDINGS_DIR=str(tmp_path / "rec"),
                WEBHOOK_SIGNING_SECRET=SECRET,
                CALL_WEBHOOK_URL=receiver.url + "/events",
            ) as (bridge, stream, session):
                await wait_until(lambda: bridge.calls.runtimes, 5, "the call to be set up")
                t0 = next(iter(bridge.calls.runtimes)).call.started_at
                await wait_until(lambda: stream.played_ms_total >= 1100, 5, "1.1 s of greeting")
                stream.say(speech_like(500))
                await wait_until(lambda: stream.clears, 5, "the clear")
                # Counted at the clear: the reply (sent at once) may start playing before the
                # test sees its response.done, and would then count partly in the baseline.
                cleared_ms = stream.played_ms_total
                await session.wait_for_event("response.done", 5, nth=2)
                await wait_until(lambda: stream.played_ms_total >= cleared_ms + 600, 5, "reply")
                await stream.wait_playback_idle()
                await asyncio.sleep(0.3)  # the last mark's echo reaches the bridge
            (ended,) = await receiver.wait_for("call.ended", 1, timeout=5)
    assert fake.violations == []
    recording = ended["data"]["recording"]
    path = Path(recording["path"])
    assert path.parent == (tmp_path / "rec").resolve()
    assert recording["format"] == "wav" and recording["channels"] == ["caller", "agent"]
    caller, agent = read_wav(path)
    length = len(caller)
    assert abs(recording["duration_s"] - length / RATE) < 0.001

    # The caller's microphone on its own 20 ms clock (when each frame was due; sent within
    # a millisecond or so of it), the loudspeaker's chunks when they started playing.
    said = timeline([(f.due_at, f.payload) for f in stream.frames], t0, length)
    heard = timeline([(c.start, c.payload) for c in stream.played], t0, length)
    lag, similarity = best_lag(caller, said)
    assert abs(lag) <= FRAME and similarity > 0.95, (lag, similarity)
    # The agent's tone is periodic (2.3 ms): its envelope is what shows the timing.
    lag, similarity = best_lag(envelope(agent), envelope(heard))
    assert abs(lag) <= FRAME and similarity > 0.95, (lag, similarity)

    # What the clear cut (over a second of the greeting) is not in the file: between the
    # clear and the reply, the agent's channel is silent.
    clear = stream.clears[0]
    assert clear.dropped_ms >= 1000
    reply_start = min(c.start for c in stream.played if c.start > clear.time)
    gap = agent[round((clear.time - t0) * RATE) + FRAME : round((reply_start - t0) * RATE) - FRAME]
    assert len(gap) > 2 * FRAME and not gap.any()
    # And it holds exactly the agent audio the bridge knew the caller had heard: up to the
    # barge-in's `played_ms` of the greeting (less the frame playing at the clear, which no
    # echo confirmed), then the whole reply. What played while the clear was on its way is
    # the one thing the bridge cannot know, so the caller's count is cut there too.
    (barge,) = logs.events("barge_in")
    first = round((min(c.start for c in stream.played) - t0) * RATE)
    known = heard.copy()
    known[first + barge["played_ms"] * RATE // 1000 : round((clear.time - t0) * RATE) + 1] = 0
    voiced = int(np.count_nonzero(np.abs(agent) > 64))
    expected = int(np.count_nonzero(np.abs(known) > 64))
    assert expected - FRAME <= voiced <= expected, (voiced, expected)


async def test_call_events_carry_the_call_its_transcript_and_its_tool_calls(
    logs: LogCapture,
) -> None:
    goodbye = "Thanks for calling. Goodbye!"
    script = [[Say("Glad I could help.", 300), FunctionCall("end_call")], [Say(goodbye, 400)]]
    with FakeEventReceiver() as receiver:
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(
                fake,
                DEFAULT_PERSONA.model_copy(update={"webhook_url": receiver.url + "/persona"}),
                WEBHOOK_SIGNING_SECRET=SECRET,
                CALL_WEBHOOK_URL=receiver.url + "/events",
            ) as (_, stream, _session):
                await asyncio.wait_for(stream.closed, 8)
            (ended,) = await receiver.wait_for("call.ended", 1, timeout=5)
    started = receiver.of_type("call.started")[0]
    paths = sorted(r.path for r in receiver.requests)
    assert paths == ["/events", "/events", "/persona", "/persona"]  # each event to both
    for request in receiver.requests:
        assert signing.verify(SECRET, request.body, request.headers[signing.HEADER], time.time())
        assert request.headers["X-Voicebridge-Event"] == request.event["type"]
    assert started["call_sid"] == ended["call_sid"] == stream.target.call_sid
    assert started["id"] != ended["id"]
    data = ended["data"]
    assert data["persona"] == "default" and data["reason"] == "agent_hangup"
    assert data["from"] == started["data"]["from"] and data["to"] == started["data"]["to"]
    assert 0.7 < data["duration_s"] < 8
    agent_lines = [line for line in data["transcript"] if line["role"] == "agent"]
    assert [line["text"] for line in agent_lines] == ["Glad I could help.", goodbye]
    # Heard to the end, the resampler's last frame included.
    assert [line["interrupted"] for line in agent_lines] == [False, False]
    assert 300 <= agent_lines[0]["played_ms"] <= 340
    assert 400 <= agent_lines[1]["played_ms"] <= 440
    (tool,) = data["tool_calls"]
    assert (tool["name"], tool["arguments"], tool["ok"]) == ("end_call", {}, True)
    assert tool["result"] and tool["duration_ms"] >= 0
    assert data["recording"] is None
    assert logs.events("call_event_undelivered") == []


async def test_twilio_records_the_call_and_its_callback_becomes_a_call_recording_event(
    logs: LogCapture,
) -> None:
    persona = DEFAULT_PERSONA.model_copy(update={"recording": "twilio"})
    with (
        FakeEventReceiver() as receiver,
        FakeTwilioRest(helpers.ACCOUNT_SID, helpers.AUTH_TOKEN) as rest,
    ):
        async with FakeRealtimeServer("ga", [[Say("Hello.", 200)]]) as fake:
            async with helpers.bridged_call(
                fake,
                persona,
                rest=rest,
                WEBHOOK_SIGNING_SECRET=SECRET,
                CALL_WEBHOOK_URL=receiver.url + "/events",
            ) as call:
                await wait_until(rest.recordings, 5, "the recording request")
                (request,) = rest.recordings()
                callback = request.form["RecordingStatusCallback"]
                # Twilio's callback once the recording is ready, signed as Twilio signs it.
                form = {
                    "AccountSid": helpers.ACCOUNT_SID,
                    "CallSid": call.call_sid,
                    "RecordingSid": "RE" + "1" * 32,
                    "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/"
                    f"{helpers.ACCOUNT_SID}/Recordings/RE{'1' * 32}",
                    "RecordingStatus": "completed",
                    "RecordingDuration": "3",
                    "RecordingChannels": "2",
                }
                signature = RequestValidator(helpers.AUTH_TOKEN).compute_signature(callback, form)
                async with httpx.AsyncClient() as client:
                    bad = await client.post(callback, data=form, headers={TWILIO_SIG: "x"})
                    good = await client.post(callback, data=form, headers={TWILIO_SIG: signature})
                (recorded,) = await receiver.wait_for("call.recording", 1, timeout=5)
            (ended,) = await receiver.wait_for("call.ended", 1, timeout=5)
    assert request.call_sid == call.call_sid
    assert request.form["RecordingChannels"] == "dual"
    assert request.form["RecordingStatusCallbackEvent"] == "completed"
    assert callback == f"{call.bridge.base_url}/recording-status?persona=default"
    assert (bad.status_code, good.status_code) == (403, 204)
    assert recorded["call_sid"] == call.call_sid
    assert recorded["data"]["url"] == form["RecordingUrl"]
    assert recorded["data"]["duration_s"] == 3.0 and recorded["data"]["channels"] == 2
    assert ended["data"]["recording"] == {"source": "twilio", "status": "pending"}
    assert logs.events("twilio_recording")[0]["ok"] is True
    assert [r["reason"] for r in logs.events("recording_status_rejected")] == [
        "bad or missing signature"
    ]


async def test_a_call_cut_by_shutdown_still_reports_its_end_before_the_process_exits(
    logs: LogCapture,
) -> None:
    with FakeEventReceiver() as receiver:
        async with FakeRealtimeServer("ga", [[Say("Hello.", 200)]]) as fake:
            values = {"OPENAI_API_KEY": "sk-test-0123456789", "REALTIME_URL": fake.url}
            settings = make_settings(
                **values, WEBHOOK_SIGNING_SECRET=SECRET, CALL_WEBHOOK_URL=receiver.url
            )
            async with running_bridge(settings) as bridge:
                target = await place_call(bridge.base_url)
                stream = TwilioMediaStream(target)
                await stream.connect()
                await wait_until(lambda: bridge.calls.runtimes, 5, "the call")
                # Leaving the block shuts the server down with the call still live.
            await stream.aclose(raise_errors=False)
        # No waiting here: the lifespan sent it before the server stopped.
        (ended,) = receiver.of_type("call.ended")
    assert ended["data"]["reason"] == "shutdown"
    assert ended["call_sid"] == target.call_sid


async def test_a_receiver_that_hangs_never_holds_up_the_call(logs: LogCapture) -> None:
    # Every delivery hangs past the sender's timeout: the call's audio must not notice.
    with FakeEventReceiver(answers=["timeout"] * 20, hold_s=3.0) as receiver:
        async with FakeRealtimeServer("ga", [[Say("Hello.", 300)]]) as fake:
            async with bridged_call(
                fake, WEBHOOK_SIGNING_SECRET=SECRET, CALL_WEBHOOK_URL=receiver.url
            ) as (_, stream, session):
                await wait_until(lambda: receiver.requests, 5, "call.started to be sent")
                began = time.monotonic()
                await asyncio.sleep(1.5)
                ended_at = time.monotonic()
            assert [r.event["type"] for r in receiver.requests][:1] == ["call.started"]
    appends = [
        r.time
        for r in session.received
        if r.type == "input_audio_buffer.append" and began <= r.time <= ended_at
    ]
    gaps = [b - a for a, b in itertools.pairwise(appends)]
    assert len(appends) >= 65  # ~75 frames in 1.5 s
    assert max(gaps) <= 0.1
    assert stream.played_ms_total >= 300
