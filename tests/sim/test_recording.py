"""The stereo call timeline and the `--wav` reader, sample by sample."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from bridge.audio import ulaw_decode, ulaw_encode
from bridge.sim.inputs import InputError, read_wav_ulaw
from bridge.sim.media_stream import InboundFrame
from bridge.sim.playback import PlayedChunk
from bridge.sim.recording import call_timeline

T0 = 100.0


def frame(chunk: int, value: int) -> InboundFrame:
    payload = ulaw_encode(np.full(160, value, np.int16))
    return InboundFrame(chunk, chunk * 20, T0 + chunk / 50, T0 + chunk / 50, payload, 160)


def played(start_s: float, n: int, value: int) -> PlayedChunk:
    payload = ulaw_encode(np.full(n, value, np.int16))
    return PlayedChunk(0, T0 + start_s, T0 + start_s, T0 + start_s + n / 8000, payload)


def test_each_side_lands_where_it_happened_and_the_end_is_cut() -> None:
    level = int(ulaw_decode(ulaw_encode(np.array([1000], np.int16)))[0])
    frames = [frame(1, 1000), frame(3, 1000)]  # 0-20 ms and 40-60 ms of the call
    agent = [played(0.100, 400, -1000), played(0.480, 800, -1000)]  # the second runs past 0.5 s
    out = call_timeline(frames, agent, T0, T0 + 0.5)
    assert out.shape == (4000, 2)
    caller = np.flatnonzero(out[:, 0])
    assert list(caller) == [*range(0, 160), *range(320, 480)]
    assert set(out[caller, 0]) == {level}
    right = np.flatnonzero(out[:, 1])
    assert list(right) == [*range(800, 1200), *range(3840, 4000)]
    assert set(out[right, 1]) == {-level}


def test_a_wav_at_any_rate_becomes_8_khz_ulaw_of_its_first_channel(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    t = np.arange(16000) / 16000
    left = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    stereo = np.column_stack([left, np.zeros_like(left)]).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(stereo.tobytes())
    ulaw = read_wav_ulaw(path)
    assert len(ulaw) == 8000  # one second at 8 kHz
    pcm = ulaw_decode(ulaw).astype(np.float64)
    assert 20 * np.log10(np.sqrt(np.mean(pcm**2)) / 32768) == pytest.approx(-15.3, abs=0.5)


def test_an_empty_wav_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(8000)
    with pytest.raises(InputError, match="holds no audio"):
        read_wav_ulaw(path)
