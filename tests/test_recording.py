"""The recorder on its own: where each frame lands in the WAV, sample for sample."""

from __future__ import annotations

import base64
import wave
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from bridge.audio.g711 import ULAW_DECODE_TABLE
from bridge.recording import (
    Recorder,
    RecordingWriter,
    recording_mode,
    recording_path,
)

T0 = 1000.0
CALLER, AGENT = 0x10, 0x20  # μ-law codes: each channel's frames are one constant value


def frame(code: int, n: int = 160) -> str:
    return base64.b64encode(bytes([code]) * n).decode()


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm[0::2], pcm[1::2]


def runs(channel: np.ndarray, code: int) -> list[tuple[int, int]]:
    """(first sample, length) of each stretch holding `code`'s value."""
    hit = np.concatenate([[0], (channel == ULAW_DECODE_TABLE[code]).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(hit))
    return [(int(a), int(b - a)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]


@pytest.fixture
async def writer() -> RecordingWriter:
    out = RecordingWriter()
    yield out  # type: ignore[misc]
    await out.aclose()


async def test_caller_frames_land_where_they_arrived_and_agent_frames_20_ms_before_their_echo(
    tmp_path: Path, writer: RecordingWriter
) -> None:
    rec = Recorder(tmp_path / "a.wav", T0, writer)
    # As on a call, in time order: 3 s of caller audio from 0.1 s on, and 200 ms of agent
    # audio sent at 0.9 s and played from 1.0 s on.
    for k in range(150):
        at = T0 + 0.1 + 0.02 * k
        if k == 40:
            for n in range(10):
                rec.agent_sent(f"0.{n}", frame(AGENT))
        if 45 <= k < 55:
            rec.agent_played(f"0.{k - 45}", T0 + 1.0 + 0.02 * (k - 44))
        rec.caller(frame(CALLER), at)
    await rec.close()
    caller, agent = read(tmp_path / "a.wav")
    assert runs(caller, CALLER) == [(800, 150 * 160)]
    assert runs(agent, AGENT) == [(8000, 10 * 160)]
    assert len(caller) == 800 + 150 * 160  # up to the last frame's end


async def test_cleared_frames_are_absent_and_an_echo_confirms_the_frames_before_it(
    tmp_path: Path, writer: RecordingWriter
) -> None:
    rec = Recorder(tmp_path / "b.wav", T0, writer)
    for k in range(5):
        rec.agent_sent(f"0.{k}", frame(AGENT))
    rec.agent_played("0.2", T0 + 0.5)  # the first three played, ending at 0.5 s
    rec.agent_cleared()  # the other two were cut by a barge-in: never heard
    rec.agent_played("0.4", T0 + 0.6)  # a clear's late echo: not a frame played
    for k in range(3):
        rec.agent_sent(f"1.{k}", frame(AGENT))
        rec.agent_played(f"1.{k}", T0 + 2.0 + 0.02 * (k + 1))
    await rec.close()
    _, agent = read(tmp_path / "b.wav")
    assert runs(agent, AGENT) == [(4000 - 480, 480), (16000, 480)]


async def test_jitter_does_not_punch_gaps_and_a_long_silence_stays_silent(
    tmp_path: Path, writer: RecordingWriter
) -> None:
    rec = Recorder(tmp_path / "c.wav", T0, writer)
    times = [0.0, 0.025, 0.038, 0.061, 0.080]  # up to 5 ms early or late: one run
    for at in times:
        rec.caller(frame(CALLER), T0 + at)
    rec.caller(frame(CALLER), T0 + 0.5)  # a real gap (the stream stalled): kept
    await rec.close()
    caller, _ = read(tmp_path / "c.wav")
    assert runs(caller, CALLER) == [(0, 5 * 160), (4000, 160)]


async def test_caller_frames_land_at_their_twilio_timestamp_when_it_is_plausible(
    tmp_path: Path, writer: RecordingWriter
) -> None:
    rec = Recorder(tmp_path / "t.wav", T0, writer)
    for ms in (20, 40, 60):  # waited in the socket while the session opened: fed at once
        rec.caller(frame(CALLER), T0 + 0.3, str(ms))
    rec.caller(frame(CALLER), T0 + 1.0, "99999999")  # not plausible: its arrival is used
    rec.caller(frame(CALLER), T0 + 2.0, "two")
    await rec.close()
    caller, _ = read(tmp_path / "t.wav")
    assert runs(caller, CALLER) == [(160, 480), (8000, 160), (16000, 160)]


async def test_late_echoes_in_a_burst_do_not_push_the_agent_channel_late(
    tmp_path: Path, writer: RecordingWriter
) -> None:
    rec = Recorder(tmp_path / "e.wav", T0, writer)
    for k in range(4):
        rec.agent_sent(f"0.{k}", frame(AGENT))
    rec.agent_played("0.0", T0 + 0.030)  # 10 ms late: it played from 0 to 20 ms
    rec.agent_played("0.1", T0 + 0.040)  # on time
    rec.agent_played("0.2", T0 + 0.075)  # these two came in one burst, 15 ms late
    rec.agent_played("0.3", T0 + 0.075)
    await rec.close()
    _, agent = read(tmp_path / "e.wav")
    assert runs(agent, AGENT) == [(0, 640)]  # back to back from the earliest bound


async def test_a_real_gap_in_the_agents_audio_stays_where_it_was(
    tmp_path: Path, writer: RecordingWriter
) -> None:
    rec = Recorder(tmp_path / "g.wav", T0, writer)
    for k in range(4):
        rec.agent_sent(f"0.{k}", frame(AGENT))
    rec.agent_played("0.0", T0 + 0.020)
    rec.agent_played("0.1", T0 + 0.040)
    # Twilio ran dry for 30 ms (the model's audio came late): the next frames played later.
    rec.agent_played("0.2", T0 + 0.090)
    rec.agent_played("0.3", T0 + 0.110)
    await rec.close()
    _, agent = read(tmp_path / "g.wav")
    assert runs(agent, AGENT) == [(0, 320), (560, 320)]


async def test_a_long_call_is_written_as_it_goes_not_kept(
    tmp_path: Path, writer: RecordingWriter
) -> None:
    rec = Recorder(tmp_path / "d.wav", T0, writer)
    for k in range(500):  # 10 s
        rec.caller(frame(CALLER), T0 + 0.02 * k)
    assert rec.samples >= 8 * 8000  # all but the last second or two went to the writer
    assert len(rec._caller.buf) <= 2 * 8000
    await rec.close()
    caller, _ = read(tmp_path / "d.wav")
    assert runs(caller, CALLER) == [(0, 500 * 160)]
    assert rec.duration_s == 10.0


async def test_a_folder_it_cannot_write_fails_at_close(
    tmp_path: Path, writer: RecordingWriter
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rec = Recorder(blocker / "x.wav", T0, writer)
    rec.caller(frame(CALLER), T0)
    with pytest.raises(OSError):
        await rec.close()


def test_the_file_name_cannot_leave_the_folder() -> None:
    at = datetime(2026, 12, 1, 23, 5, 9, tzinfo=UTC)
    path = recording_path("/srv/rec", "../../etc/passwd", at)
    assert path == Path("/srv/rec/20261201T230509Z_______etc_passwd.wav")
    assert recording_path(None, "CA" + "a" * 32, at).parent == Path("recordings")


@pytest.mark.parametrize(
    ("persona", "folder", "mode"),
    [
        (None, None, None),
        (None, "/rec", "local"),
        (True, None, "local"),
        (False, "/rec", None),
        ("twilio", "/rec", "twilio"),
    ],
)
def test_the_persona_decides_else_recordings_dir(
    persona: bool | str | None, folder: str | None, mode: str | None
) -> None:
    assert recording_mode(persona, folder) == mode
