"""Twilio's side of a bidirectional Media Stream, checked against a tiny real server."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import time

import httpx
import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from bridge.sim import StreamClosed, StreamRejected, TwilioMediaStream, place_call
from bridge.sim.audio import tone

from .conftest import FakeBridge

FRAME = 160


async def test_connected_then_start_with_twilios_fields(server: FakeBridge) -> None:
    async with TwilioMediaStream(server.target(token="tok-9", persona="p")) as stream:
        await server.next("media")
    connected, start, media = (a.message for a in server.log[:3])
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert re.fullmatch(r"MZ[0-9a-f]{32}", stream.stream_sid)
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": stream.stream_sid,
        "start": {
            "accountSid": "AC" + "b" * 32,
            "streamSid": stream.stream_sid,
            "callSid": "CA" + "a" * 32,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "tok-9", "persona": "p"},
        },
    }
    assert media["sequenceNumber"] == "2"


async def test_a_160_byte_frame_goes_out_every_20_ms(server: FakeBridge) -> None:
    async with TwilioMediaStream(server.target()) as stream:
        await asyncio.sleep(0.5)
        sent = len(stream.frames)
        assert stream.started_at is not None
        elapsed = time.monotonic() - stream.started_at
    media = [a.message for a in server.log if a.message["event"] == "media"]
    # One frame per 20 ms elapsed, ±2 frames (±40 ms) for a busy machine.
    assert abs(sent - elapsed / 0.020) <= 2
    assert sent >= 23
    assert [int(m["media"]["chunk"]) for m in media] == list(range(1, len(media) + 1))
    assert [int(m["media"]["timestamp"]) for m in media] == [
        20 * k for k in range(1, len(media) + 1)
    ]
    numbers = [int(a.message["sequenceNumber"]) for a in server.log[1:]]
    assert numbers == list(range(1, len(numbers) + 1))
    for m in media:
        assert m["streamSid"] == stream.stream_sid
        assert m["media"]["track"] == "inbound"
        assert base64.b64decode(m["media"]["payload"]) == b"\xff" * FRAME
    # The schedule is absolute: frame k is due exactly k·20 ms after start, never drifting.
    for frame in stream.frames:
        assert frame.due_at == pytest.approx(stream.started_at + frame.chunk * 0.020)
        assert frame.sent_at >= frame.due_at


async def test_said_audio_goes_out_in_order_then_silence(server: FakeBridge) -> None:
    speech = tone(100) + bytes(range(50))  # 850 bytes: five full frames and a partial one
    async with TwilioMediaStream(server.target()) as stream:
        first = stream.say(tone(100))
        second = stream.say(bytes(range(50)))
        assert stream.speaking
        assert await stream.wait_said() is second
        assert not stream.speaking
    spoken = [f for f in stream.frames if f.speech_bytes]
    assert b"".join(f.payload for f in spoken)[: len(speech)] == speech
    assert spoken[-1].payload[50:] == b"\xff" * 110
    assert sum(f.speech_bytes for f in spoken) == 850
    assert (first.first_chunk, first.last_chunk) == (spoken[0].chunk, spoken[0].chunk + 4)
    assert second.first_chunk == second.last_chunk == spoken[0].chunk + 5
    assert second.finished_at == spoken[-1].sent_at


async def test_mark_is_echoed_only_after_the_audio_before_it_has_played(
    server: FakeBridge,
) -> None:
    async with TwilioMediaStream(server.target()) as stream:
        await server.next("media")
        sent_at = time.monotonic()
        for _ in range(10):
            await server.send_media(b"\x11" * FRAME)
        await server.send_mark("after-200ms")
        echo = await server.next("mark")
    assert echo.time - sent_at >= 0.200 - 0.020
    assert echo.message == {
        "event": "mark",
        "sequenceNumber": echo.message["sequenceNumber"],
        "streamSid": stream.stream_sid,
        "mark": {"name": "after-200ms"},
    }
    [mark] = stream.marks
    assert (mark.name, mark.cleared) == ("after-200ms", False)
    assert mark.time == pytest.approx(stream.playback.played(mark.time)[-1].end)
    assert mark.sent_at is not None and mark.sent_at >= mark.time
    assert stream.protocol_errors == []


async def test_mark_on_an_empty_buffer_comes_back_at_once(server: FakeBridge) -> None:
    async with TwilioMediaStream(server.target()) as stream:
        await server.next("media")
        sent_at = time.monotonic()
        await server.send_mark("idle")
        echo = await server.next("mark")
    assert echo.time - sent_at < 0.1
    assert stream.marks[0].cleared is False


async def test_clear_echoes_all_pending_marks_at_once_and_drops_unplayed_audio(
    server: FakeBridge,
) -> None:
    async with TwilioMediaStream(server.target()) as stream:
        await server.next("media")
        for _ in range(50):
            await server.send_media(b"\x11" * FRAME)
        await server.send_mark("a")
        for _ in range(25):
            await server.send_media(b"\x11" * FRAME)
        await server.send_mark("b")
        await asyncio.sleep(0.3)
        await server.send_clear()
        echoes = [await server.next("mark"), await server.next("mark")]
        heard_at_clear = stream.heard_audio()
        for _ in range(5):
            await server.send_media(b"\x22" * FRAME)
        await server.send_mark("after-clear")
        await server.next("mark")
        heard = stream.heard_audio()
        played_ms = stream.played_ms_total
    assert [e.message["mark"]["name"] for e in echoes] == ["a", "b"]
    assert abs(echoes[1].time - echoes[0].time) < 0.05
    assert [(m.name, m.cleared) for m in stream.marks] == [
        ("a", True),
        ("b", True),
        ("after-clear", False),
    ]
    [clear] = stream.clears
    assert clear.marks_cleared == ("a", "b")
    assert 300 - 40 <= clear.played_ms_total <= 300 + 150
    assert clear.played_ms_total + clear.dropped_ms == pytest.approx(1500)
    assert heard_at_clear == b"\x11" * round(clear.played_ms_total * 8)
    assert heard == heard_at_clear + b"\x22" * 800
    assert len(heard) == played_ms * 8
    # Nothing sent before the clear reached the caller after it.
    assert all(c.payload[:1] == b"\x22" for c in stream.played if c.start >= clear.time)
    assert stream.protocol_errors == []


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"event": "play", "streamSid": "{sid}"}, "'play' is not one of"),
        ({"event": "clear", "streamSid": "MZ" + "0" * 32}, "streamSid"),
        ({"event": "clear"}, "streamSid None"),
        ({"event": "media", "streamSid": "{sid}", "media": {"payload": "%%%"}}, "base64"),
        ({"event": "media", "streamSid": "{sid}", "media": {}}, "media.payload"),
        ({"event": "mark", "streamSid": "{sid}", "mark": {}}, "mark.name"),
        ("not json", "not JSON"),
        ('["media"]', "not a JSON object"),
        (
            {
                "event": "media",
                "streamSid": "{sid}",
                "media": {"payload": base64.b64encode(b"RIFF....WAVE").decode()},
            },
            "WAV",
        ),
    ],
)
async def test_messages_twilio_rejects_are_recorded_as_protocol_errors(
    server: FakeBridge, message: dict | str, error: str
) -> None:
    async with TwilioMediaStream(server.target()) as stream:
        await server.next("media")
        if isinstance(message, dict):
            message = {k: stream.stream_sid if v == "{sid}" else v for k, v in message.items()}
        await server.send(message)
        await server.send_mark("sync")
        await server.next("mark")
    [recorded] = stream.protocol_errors
    assert error in recorded
    assert stream.played == []


async def test_a_binary_frame_is_a_protocol_error(server: FakeBridge) -> None:
    async with TwilioMediaStream(server.target()) as stream:
        await server.next("media")
        assert server.ws is not None
        await server.ws.send(b"\xff" * FRAME)
        await server.send_mark("sync")
        await server.next("mark")
    assert len(stream.protocol_errors) == 1
    assert "binary" in stream.protocol_errors[0]


async def test_handshake_is_signed_over_the_stream_url_without_query(
    server: FakeBridge,
) -> None:
    target = dataclasses.replace(server.target(), url=server.url + "?dropped=1")
    async with TwilioMediaStream(target, auth_token="secret"):
        await server.accepted.wait()
    assert server.ws is not None
    request = server.ws.request
    assert request is not None
    assert request.path == "/media-stream"
    signature = request.headers["X-Twilio-Signature"]
    assert RequestValidator("secret").validate(server.url, {}, signature)
    assert not RequestValidator("other").validate(server.url, {}, signature)


async def test_unsigned_handshake_without_token(server: FakeBridge) -> None:
    async with TwilioMediaStream(server.target()):
        await server.accepted.wait()
    assert server.ws is not None and server.ws.request is not None
    assert "X-Twilio-Signature" not in server.ws.request.headers


async def test_server_close_code_and_reason_are_recorded(server: FakeBridge) -> None:
    async def refuse(ws: ServerConnection) -> None:
        await ws.close(1008, "bad signature")

    server.on_accept = refuse
    async with TwilioMediaStream(server.target()) as stream:
        info = await asyncio.wait_for(stream.closed, 3)
        with pytest.raises(StreamClosed):
            stream.say(tone(40))
            await stream.wait_said()
    assert (info.code, info.reason, info.initiator) == (1008, "bad signature", "server")
    assert stream.protocol_errors == []


async def test_stop_sends_stop_then_closes_normally(server: FakeBridge) -> None:
    async with TwilioMediaStream(server.target()) as stream:
        await server.next("media")
        info = await stream.stop()
        frames_at_stop = len(stream.frames)
        await asyncio.sleep(0.06)
        assert len(stream.frames) == frames_at_stop
    await server.finished.wait()
    stop = server.log[-1].message
    assert stop == {
        "event": "stop",
        "sequenceNumber": stop["sequenceNumber"],
        "streamSid": stream.stream_sid,
        "stop": {"accountSid": "AC" + "b" * 32, "callSid": "CA" + "a" * 32},
    }
    assert int(stop["sequenceNumber"]) == len(server.log) - 1
    assert server.close_code == 1000
    assert (info.code, info.initiator) == (1000, "client")


async def test_abrupt_hangup_sends_no_stop_and_no_close_frame(server: FakeBridge) -> None:
    async with TwilioMediaStream(server.target()) as stream:
        await server.next("media")
        info = await stream.hangup_abruptly()
    await asyncio.wait_for(server.finished.wait(), 3)
    assert all(a.message["event"] != "stop" for a in server.log)
    assert server.close_code == 1006
    assert (info.code, info.initiator) == (1006, "abort")


async def test_dtmf_is_sent_as_twilio_reports_it(server: FakeBridge) -> None:
    async with TwilioMediaStream(server.target()) as stream:
        await stream.send_dtmf("#")
        dtmf = (await server.next("dtmf")).message
        with pytest.raises(ValueError):
            await stream.send_dtmf("A")
    assert dtmf == {
        "event": "dtmf",
        "sequenceNumber": dtmf["sequenceNumber"],
        "streamSid": stream.stream_sid,
        "dtmf": {"track": "inbound_track", "digit": "#"},
    }


async def test_received_messages_are_kept_with_their_arrival_time(server: FakeBridge) -> None:
    seen = []
    async with TwilioMediaStream(server.target(), on_message=seen.append) as stream:
        await server.next("media")
        before = time.monotonic()
        await server.send_mark("m")
        await server.next("mark")
    [record] = stream.received
    assert record.message == {
        "event": "mark",
        "streamSid": stream.stream_sid,
        "mark": {"name": "m"},
    }
    assert record.time >= before and record.error is None
    assert seen == [record]


async def test_leaving_the_block_leaves_no_task_behind(server: FakeBridge) -> None:
    before = asyncio.all_tasks()
    async with TwilioMediaStream(server.target()) as stream:
        stream.say(tone(60))
        await server.send_mark("m")
        await server.next("media")
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()


async def test_an_http_refusal_of_the_upgrade_raises_stream_rejected() -> None:
    def forbid(connection: object, request: object) -> Response:
        return Response(403, "Forbidden", Headers({"Content-Length": "4"}), b"nope")

    async with serve(lambda ws: asyncio.sleep(0), "127.0.0.1", 0, process_request=forbid) as ws:
        port = ws.sockets[0].getsockname()[1]
        refusing = FakeBridge()
        refusing.port = port
        with pytest.raises(StreamRejected) as caught:
            async with TwilioMediaStream(refusing.target()):
                pass
    assert (caught.value.status, caught.value.body) == (403, "nope")


async def test_a_placed_call_streams_with_the_twiml_parameters(server: FakeBridge) -> None:
    twiml = (
        f'<Response><Connect><Stream url="{server.url}">'
        '<Parameter name="token" value="from-twiml"/></Stream></Connect></Response>'
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=twiml, headers={"content-type": "text/xml"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        target = await place_call("http://127.0.0.1:1", call_sid="CA" + "c" * 32, client=client)
    async with TwilioMediaStream(target):
        start = (await server.next("start")).message["start"]
    assert start["customParameters"] == {"token": "from-twiml"}
    assert start["callSid"] == "CA" + "c" * 32


async def test_wait_playback_idle_returns_when_the_buffer_has_played(
    server: FakeBridge,
) -> None:
    async with TwilioMediaStream(server.target()) as stream:
        await server.next("media")
        for _ in range(5):
            await server.send_media(b"\x11" * FRAME)
        await server.send_mark("sync")  # all five chunks are queued once this arrives
        await asyncio.sleep(0.01)
        assert 0 < stream.buffered_ms <= 100
        await stream.wait_playback_idle()
        assert stream.buffered_ms == 0
        assert stream.played_ms_total == 100
