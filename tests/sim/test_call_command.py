"""`voicebridge call` as a user meets it: exit statuses, one-line errors, inputs checked before
dialling, signing for the bridge's public URL, reply latency of key presses, the stereo
recording. The bridge is the real app on loopback, its model the Realtime fake."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from bridge.cli import main
from bridge.persona import DtmfAction, DtmfConfig, Persona, Tools, TransferCallTool, TransferTarget
from bridge.sim.cli import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_UNREACHABLE,
    call_command,
    run_call,
    summary,
)
from bridge.sim.inputs import LEAD_IN_SAMPLES, InputError, plan_call, tts_ulaw
from tests.conftest import LogCapture, free_port, make_settings, running_bridge
from tests.fakes.realtime import FakeRealtimeServer, Say

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "twilio-token-0123456789abcdef"
PUBLIC = "https://voice.example.com"


def run(*args: str, **kwargs: object) -> tuple[int, list[str], list[str]]:
    """`call_command` with its output and error lines captured."""
    out: list[str] = []
    err: list[str] = []
    defaults: dict[str, object] = dict(says=[], wav=None, dtmf="", record=None, auth_token=None)
    defaults.update(kwargs)
    status = call_command(*args, out=out.append, err=err.append, **defaults)  # type: ignore[arg-type]
    return status, out, err


@pytest.fixture
def listener() -> socket.socket:
    """A port that accepts connections but never answers: proves nothing was dialled."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    yield sock
    sock.close()


def nothing_dialled(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wav": "missing.wav"}, "--wav missing.wav: no such file"),
        ({"wav": "NOT_A_WAV"}, "not a 16-bit PCM WAV file"),
        ({"wav": "EIGHT_BIT"}, "8-bit samples; only 16-bit PCM WAV files are supported"),
        ({"record": "/nonexistent-folder/call.wav"}, "does not exist"),
        ({"dtmf": "12x"}, "--dtmf takes 0-9, * and #, not 'x'"),
        ({"says": ["  "]}, "--say needs some words"),
    ],
)
def test_bad_inputs_exit_2_with_one_line_before_anything_is_dialled(
    listener: socket.socket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict[str, object],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "NOT_A_WAV").write_text("hello")
    with wave.open(str(tmp_path / "EIGHT_BIT"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(1)
        f.setframerate(8000)
        f.writeframes(b"\x80" * 800)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    status, out, err = run(url, **kwargs)
    assert status == EXIT_INPUT
    assert len(err) == 1 and err[0].startswith("voicebridge call: ") and message in err[0]
    assert out == []
    assert nothing_dialled(listener)


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "localhost:8080", "ws://127.0.0.1:8080"])
def test_a_url_without_an_http_scheme_is_refused(url: str) -> None:
    with pytest.raises(InputError, match="expected an http:// or https:// URL"):
        plan_call(url)


def test_a_bridge_that_is_not_running_is_one_line_and_exit_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status, out, err = run(url, says=["hello"])
    assert status == EXIT_UNREACHABLE
    assert err == [
        f"voicebridge call: cannot reach the bridge at {url}: connection refused "
        "(is `voicebridge serve` running there?)"
    ]
    assert out == []


def test_the_command_line_prints_no_traceback() -> None:
    """The installed command, as a person runs it: stderr is the one line, nothing else."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TWILIO_AUTH_TOKEN", None)
    cases = [
        (["--url", "127.0.0.1:8080"], EXIT_INPUT, "expected an http:// or https:// URL"),
        (["--url", f"http://127.0.0.1:{free_port()}"], EXIT_UNREACHABLE, "cannot reach"),
    ]
    for args, status, text in cases:
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "call", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=ROOT,
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == status, done.stderr
        assert len(lines) == 1 and text in lines[0], done.stderr


async def test_a_call_the_bridge_fails_exits_1_and_says_so(logs: LogCapture) -> None:
    dead = f"ws://127.0.0.1:{free_port()}/v1/realtime"  # nothing listens there
    settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=dead)
    async with running_bridge(settings) as bridge:
        status, out, err = await asyncio.to_thread(run, bridge.base_url, says=["hello"])
    assert status == EXIT_FAILED
    assert err == [
        "voicebridge call: the call failed: the bridge failed it (close 1011: upstream unavailable)"
    ]
    assert "duration:" in "\n".join(out) and "the bridge failed it (close 1011" in out[-1]
    assert logs.events("call_ended")[0]["reason"] == "upstream_failed"


async def test_signed_mode_signs_for_the_public_url_without_needing_it_in_the_environment(
    logs: LogCapture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    async with FakeRealtimeServer("ga", [[Say("Hello", 300)]]) as fake:
        settings = make_settings(
            OPENAI_API_KEY="sk-test-0123456789",
            REALTIME_URL=fake.url,
            TWILIO_AUTH_TOKEN=TOKEN,
            PUBLIC_URL=PUBLIC,
        )
        async with running_bridge(settings) as bridge:
            # Signed for --url (the default without --public-url): the bridge checks against
            # its PUBLIC_URL, so it refuses; with --public-url the same call goes through.
            refused = await asyncio.to_thread(main, ["call", "--url", bridge.base_url])
            signed = await asyncio.to_thread(
                main, ["call", "--url", bridge.base_url, "--public-url", PUBLIC]
            )
            monkeypatch.setenv("PUBLIC_URL", PUBLIC)
            from_env = await asyncio.to_thread(main, ["call", "--url", bridge.base_url])
    assert (refused, signed, from_env) == (EXIT_FAILED, EXIT_OK, EXIT_OK)
    [rejected] = logs.events("call_rejected")
    assert rejected["reason"] == "bad or missing signature"
    ended = logs.events("call_ended")
    assert [e["reason"] for e in ended] == ["caller_hangup", "caller_hangup"]


async def test_the_reply_latency_of_key_presses_counts_from_the_first_key() -> None:
    script = [[Say("Hello", 400)], [Say("You pressed keys", 600)], [Say("Again", 300)]]
    async with FakeRealtimeServer("ga", script, speed=1.0, response_delay_s=0.6) as fake:
        settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url)
        async with running_bridge(settings) as bridge:
            report = await run_call(bridge.base_url, dtmf="12", out=lambda _line: None)
    [latency] = report.reply_latencies_s
    # The model waits 0.6 s after the first key's response.create; the second key follows
    # 0.3 s after the first, so a clock started after the keys would read about 0.3 s.
    assert 0.6 <= latency < 2.0


async def test_the_recording_is_both_sides_in_stereo_on_the_calls_timeline(
    logs: LogCapture, tmp_path: Path
) -> None:
    record = tmp_path / "call.wav"
    script = [[Say("Hello", 1000)], [Say("Answer", 800)]]
    line = tts_ulaw("hello there")
    # A fifth ahead of real time, as the hosted service streams ahead of playback: paced at
    # exactly real time, every delta that came a millisecond late left a gap at the caller.
    async with FakeRealtimeServer("ga", script, ["hello there"], speed=1.2) as fake:
        settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url)
        async with running_bridge(settings) as bridge:
            report = await run_call(
                bridge.base_url, says=["hello there"], record=str(record), out=lambda _l: None
            )
    with wave.open(str(record)) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (2, 2, 8000)
        frames = f.getnframes()
        audio = np.frombuffer(f.readframes(frames), dtype="<i2").reshape(-1, 2)
    caller, agent = audio[:, 0].astype(np.float64), audio[:, 1].astype(np.float64)

    # The whole call, gaps included: from the stream's start to its close.
    assert frames == round(report.duration_s * 8000)
    assert report.duration_s > 1.0 + 0.8 + len(line) / 8000

    # The agent's channel: both turns where the caller heard them, silence elsewhere.
    # (the bridge sends whole 20 ms frames: 1000 + 800 ms of speech play as 1020 + 820).
    played = [t["played_ms"] for t in logs.events("transcript") if t["role"] == "agent"]
    assert played == [1020, 820] and report.heard_ms == sum(played)
    assert len(report.agent_spans) == 2
    inside = np.zeros(frames, dtype=bool)
    for start, end in report.agent_spans:
        inside[round(start * 8000) : round(end * 8000)] = True
    # Spans merge the few-ms gaps of late frames, so they cover a little more than was played.
    assert sum(played) * 8 - 4 <= inside.sum() <= sum(played) * 8 + 400
    assert not agent[~inside].any()
    assert 20 * np.log10(np.sqrt(np.mean(agent[inside] ** 2)) / 32768) > -20
    assert report.first_audio_s is not None
    assert abs(np.flatnonzero(agent)[0] / 8000 - report.first_audio_s) < 0.005

    # The caller's channel: the line, from its speech onset, and nothing while the agent spoke.
    [speech_at] = report.caller_speech_at
    spoken = np.flatnonzero(caller)
    assert spoken[0] / 8000 >= speech_at - 0.02
    assert spoken[-1] / 8000 <= speech_at + (len(line) - LEAD_IN_SAMPLES) / 8000 + 0.02
    greeting_end = report.agent_spans[0][1]
    assert not caller[: round(greeting_end * 8000)].any()
    assert 20 * np.log10(np.sqrt(np.mean(caller[spoken[0] : spoken[-1]] ** 2)) / 32768) > -40


async def test_a_url_that_is_not_the_bridges_root_is_a_refused_call() -> None:
    settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL="ws://127.0.0.1:9")
    async with running_bridge(settings) as bridge:
        status, out, err = await asyncio.to_thread(run, bridge.base_url + "/voice", says=["hi"])
    assert status == EXIT_FAILED and out == []
    assert len(err) == 1
    assert err[0].startswith(
        "voicebridge call: the bridge refused the call: call rejected: webhook did not answer "
        "200 (HTTP 404)"
    )


async def test_the_simulated_call_follows_the_connect_action_as_twilio_does() -> None:
    """Offline, a keypad transfer is carried out the way Twilio would: the stream ends, the
    command requests the `<Connect>` action and says what came next."""
    persona = Persona(
        name="desk",
        instructions="Answer.",
        greeting="Hello.",
        tools=Tools(transfer_call=TransferCallTool(filler="Putting you through.")),
        transfer_targets={"operator": TransferTarget(number="+15550009999")},
        dtmf=DtmfConfig(menu={"0": DtmfAction(action="transfer", target="operator")}),
    )
    script = [[Say("Hello", 300)], [Say("Putting you through.", 300)]]
    async with FakeRealtimeServer("ga", script) as fake:
        settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url)
        async with running_bridge(settings, persona) as bridge:
            report = await run_call(bridge.base_url, dtmf="0", out=lambda _line: None)
    assert report.ended_by == "bridge"
    assert report.after_stream == "transferred to +15550009999"
    assert "after the stream:         transferred to +15550009999" in summary(report)
