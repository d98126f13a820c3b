"""Voice activity detection with WebRTC's VAD (the `webrtcvad-wheels` package).

WebRTC's detector is a small Gaussian model of speech versus noise, so unlike a plain energy
threshold it ignores steady hum and loud non-speech. It judges 10/20/30 ms frames at 8, 16,
32 or 48 kHz; the engine works at 24 kHz, so each 20 ms frame is taken down to 8 kHz (what a
phone line carries anyway) by the audio core's streaming resampler.

The onset guard, the silence hangover and the sample offsets it reports are exactly those of
:class:`~bridge.engine.vad.EnergyVad`; only the per-frame decision differs.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import webrtcvad

from bridge.audio import Resampler24kTo8k
from bridge.engine.codec import ENGINE_RATE, Pcm
from bridge.engine.config import EngineTurnDetection
from bridge.engine.vad import EnergyVad, VadEvent

FRAME_MS: Final = 20
MIN_SPEECH_MS: Final = 100
"""Voiced time before a start is reported: WebRTC's VAD flags single clicks as speech, and a
false start cancels the agent's response (barge-in)."""

FLOOR_DBFS: Final = -50.0
"""Frames quieter than this are never speech, whatever the model says: its decision is
level-independent, so line noise alone could otherwise open a turn."""


def mode_for_threshold(threshold: float) -> int:
    """The protocol's 0..1 ``threshold`` (higher = needs clearer speech) as WebRTC's
    aggressiveness 0..3 (higher = more frames rejected as non-speech); 0.5 → 2."""
    return min(3, max(0, int(threshold * 4)))


class WebRtcVad(EnergyVad):
    """:class:`EnergyVad`'s turn logic with WebRTC's speech/non-speech decision per frame."""

    def __init__(
        self,
        *,
        mode: int = 2,
        silence_ms: int = 500,
        min_speech_ms: int = MIN_SPEECH_MS,
        floor_dbfs: float = FLOOR_DBFS,
    ) -> None:
        super().__init__(
            threshold_dbfs=floor_dbfs,
            silence_ms=silence_ms,
            min_speech_ms=min_speech_ms,
            frame_ms=FRAME_MS,
            sample_rate=ENGINE_RATE,
        )
        self._vad = webrtcvad.Vad(mode)
        self._down = Resampler24kTo8k()

    def feed(self, pcm: Pcm) -> list[VadEvent]:
        data = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        n_frames = len(data) // self._frame
        events: list[VadEvent] = []
        for k in range(n_frames):
            frame = data[k * self._frame : (k + 1) * self._frame]
            narrow = self._down.process(frame)
            loud = float(np.mean(frame.astype(np.float64) ** 2)) >= self._threshold_ms_square
            voiced = (
                loud
                and len(narrow) == 160
                and self._vad.is_speech(narrow.astype("<i2").tobytes(), 8000)
            )
            event = self._step(voiced)
            if event is not None:
                events.append(event)
        self._pending = data[n_frames * self._frame :].copy()
        return events


def webrtc_vad_factory(turn_detection: EngineTurnDetection) -> WebRtcVad:
    """The engine's VAD for a session's turn-detection settings."""
    return WebRtcVad(
        mode=mode_for_threshold(turn_detection.threshold),
        silence_ms=turn_detection.effective_silence_ms,
    )
