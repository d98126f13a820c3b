"""Both sides of a simulated call on one timeline, as a stereo WAV (caller left, agent right).

A recording is for listening to what happened: where the agent was slow, where the caller
talked over it. So nothing is squeezed out: sample n of the file is the instant
`started_at + n / 8000` of the call, from the stream's `start` to its close. The caller's
channel is each inbound frame where its 20 ms were spoken (the 20 ms before it was due); the
agent's is each chunk where the caller's loudspeaker played it, cut chunks as far as they
played, dropped audio not at all.
"""

from __future__ import annotations

import wave
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bridge.audio import ulaw_decode
from bridge.sim.audio import SAMPLE_RATE
from bridge.sim.media_stream import FRAME_BYTES, InboundFrame
from bridge.sim.playback import PlayedChunk


def call_timeline(
    frames: Iterable[InboundFrame],
    played: Iterable[PlayedChunk],
    started_at: float,
    ended_at: float,
) -> np.ndarray:
    """An (n, 2) int16 array: the caller's and the agent's audio from `started_at` to
    `ended_at`, at 8 kHz. Audio past the end is cut off (a chunk playing at the close)."""
    n = max(0, round((ended_at - started_at) * SAMPLE_RATE))
    out = np.zeros((n, 2), dtype=np.int16)
    for frame in frames:
        # Frame k carries the 20 ms spoken before it was due (k·20 ms after `start`).
        _place(out, 0, (frame.chunk - 1) * FRAME_BYTES, frame.payload)
    for chunk in played:
        _place(out, 1, round((chunk.start - started_at) * SAMPLE_RATE), chunk.payload)
    return out


def _place(out: np.ndarray, channel: int, at: int, ulaw: bytes) -> None:
    n = len(out)
    if at >= n or not ulaw:
        return
    pcm = ulaw_decode(ulaw)
    if at < 0:
        pcm, at = pcm[-at:], 0
    end = min(n, at + len(pcm))
    out[at:end, channel] = pcm[: end - at]


def write_stereo_wav(path: str | Path, timeline: np.ndarray) -> None:
    """Save a `call_timeline` as a 16-bit PCM stereo WAV at 8 kHz."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(np.ascontiguousarray(timeline, dtype="<i2").tobytes())
