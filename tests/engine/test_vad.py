"""EnergyVad: where speech starts and stops, in samples, however the audio is chunked."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.engine.vad import EnergyVad, VoiceStarted, VoiceStopped, rms_dbfs, threshold_to_dbfs
from bridge.engine.voice import tone


def silence(ms: int) -> np.ndarray:
    return np.zeros(ms * 24, dtype=np.int16)


BURST = np.concatenate([silence(500), tone(600), silence(1000)])


@pytest.mark.parametrize("chunk", [480, 160, 4801, len(BURST)])
def test_tone_burst_gives_one_start_and_one_stop(chunk: int) -> None:
    vad = EnergyVad(silence_ms=500)
    events = [e for i in range(0, len(BURST), chunk) for e in vad.feed(BURST[i : i + chunk])]
    # Speech starts at the tone's first sample (500 ms) and stops once 500 ms of silence
    # have followed its end at 1100 ms.
    assert events == [VoiceStarted(500 * 24), VoiceStopped(1600 * 24)]


def test_a_click_shorter_than_min_speech_is_not_speech() -> None:
    vad = EnergyVad(min_speech_ms=60)
    audio = np.concatenate([silence(200), tone(40), silence(1000)])
    assert vad.feed(audio) == []


def test_pauses_shorter_than_the_silence_do_not_end_the_turn() -> None:
    vad = EnergyVad(silence_ms=500)
    audio = np.concatenate([tone(300), silence(400), tone(300), silence(600)])
    assert vad.feed(audio) == [VoiceStarted(0), VoiceStopped((1000 + 500) * 24)]


def test_audio_below_the_threshold_is_silence() -> None:
    quiet = tone(1000, dbfs=-50)  # RMS about -53 dBFS
    assert rms_dbfs(quiet) == pytest.approx(-53.0, abs=0.1)
    assert EnergyVad(threshold_dbfs=-40).feed(quiet) == []
    assert EnergyVad(threshold_dbfs=-60).feed(quiet) == [VoiceStarted(0)]


def test_protocol_threshold_maps_onto_dbfs() -> None:
    assert [threshold_to_dbfs(t) for t in (0.0, 0.5, 1.0)] == [-60.0, -40.0, -20.0]
