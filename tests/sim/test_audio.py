"""Test audio: the μ-law codec and the signals simulated callers speak."""

import wave
from pathlib import Path

import numpy as np
import pytest

from bridge.audio.g711 import ulaw_decode
from bridge.sim.audio import rms_dbfs, silence, speech_like, tone, write_wav


def test_silence_is_0xff_eight_bytes_per_ms() -> None:
    assert silence(20) == b"\xff" * 160
    assert rms_dbfs(silence(20)) == float("-inf")
    with pytest.raises(ValueError):
        silence(-1)


def test_tone_has_the_requested_length_and_level() -> None:
    audio = tone(100, freq_hz=1000, level_dbfs=-12)
    assert len(audio) == 800
    assert rms_dbfs(audio) == pytest.approx(-12, abs=0.5)


def test_speech_like_burst_is_loud_deterministic_and_fades_in() -> None:
    burst = speech_like(600, level_dbfs=-16, seed=3)
    assert len(burst) == 4800
    assert rms_dbfs(burst) == pytest.approx(-16, abs=1)
    assert burst == speech_like(600, level_dbfs=-16, seed=3)
    assert burst != speech_like(600, level_dbfs=-16, seed=4)
    assert rms_dbfs(burst[:8]) < rms_dbfs(burst) - 20


def test_write_wav_saves_16_bit_pcm_at_8khz(tmp_path: Path) -> None:
    path = tmp_path / "heard.wav"
    write_wav(path, tone(50))
    with wave.open(str(path)) as saved:
        assert (saved.getframerate(), saved.getsampwidth(), saved.getnchannels()) == (8000, 2, 1)
        assert saved.getnframes() == 400
        pcm = np.frombuffer(saved.readframes(400), dtype="<i2")
    assert pcm.tolist() == ulaw_decode(tone(50)).tolist()
