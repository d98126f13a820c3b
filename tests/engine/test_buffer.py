"""The input audio buffer keeps timeline offsets exact across takes and trims."""

from __future__ import annotations

import numpy as np

from bridge.engine.buffer import InputAudioBuffer


def ramp(start: int, n: int) -> np.ndarray:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


def test_take_returns_the_span_and_keeps_the_rest() -> None:
    buffer = InputAudioBuffer()
    for i in range(0, 1000, 70):
        buffer.append(ramp(i, min(70, 1000 - i)))
    assert (buffer.start, buffer.end) == (0, 1000)
    assert np.array_equal(buffer.take(100, 400), ramp(100, 300))
    assert (buffer.start, buffer.end) == (400, 1000)
    assert np.array_equal(buffer.take_all(), ramp(400, 600))
    assert buffer.ms == 0 and buffer.end == 1000


def test_keep_last_drops_old_audio_but_not_the_timeline() -> None:
    buffer = InputAudioBuffer()
    for i in range(0, 2400, 240):
        buffer.append(ramp(i, 240))
    buffer.keep_last(500)
    assert (buffer.start, buffer.end) == (1900, 2400)
    assert np.array_equal(buffer.take(0, 2400), ramp(1900, 500))
