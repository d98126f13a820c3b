"""Voice activity detection: where, on the input-audio timeline, a caller starts and stops.

A VAD is fed PCM16 24 kHz chunks of any size and reports :class:`VoiceStarted` /
:class:`VoiceStopped` with absolute sample offsets (counted from the first sample it was
fed), so the session can turn them into the ``audio_start_ms`` / ``audio_end_ms`` the
protocol reports, independent of how the client chunked its audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bridge.engine.codec import ENGINE_RATE, Pcm


@dataclass(frozen=True)
class VoiceStarted:
    """Speech began at ``sample`` (the first voiced sample, before any prefix padding)."""

    sample: int


@dataclass(frozen=True)
class VoiceStopped:
    """The turn ended at ``sample``: the point where the trailing silence became long enough."""

    sample: int


VadEvent = VoiceStarted | VoiceStopped


class Vad(Protocol):
    """What the session needs from a voice activity detector."""

    def feed(self, pcm: Pcm) -> list[VadEvent]:
        """Consume the next samples; return the starts and stops they complete, in order."""
        ...


def threshold_to_dbfs(threshold: float) -> float:
    """Map the protocol's 0..1 ``threshold`` onto an energy threshold: 0→-60, 0.5→-40, 1→-20 dBFS.

    The service's threshold is a model probability; an energy VAD needs a level. This linear
    map keeps the documented direction (higher = needs louder audio) and puts the default
    between a phone line's noise floor (about -55 dBFS) and quiet speech (about -30 dBFS).
    """
    return -60.0 + 40.0 * min(max(threshold, 0.0), 1.0)


class EnergyVad:
    """RMS-threshold VAD with an onset guard and a silence hangover.

    Audio is judged in frames of ``frame_ms``. A frame is voiced when its RMS level is at or
    above ``threshold_dbfs``. Speech starts once ``min_speech_ms`` of consecutive voiced frames
    have been seen (so clicks and pops do not barge in); it is reported at the first of those
    frames. Speech stops once ``silence_ms`` of consecutive unvoiced frames follow; it is
    reported where that silence completes, which is what the service's ``audio_end_ms``
    means ("includes the silence duration").

    Parameters:
        threshold_dbfs: frame RMS level, in dB relative to full scale, that counts as voice.
        silence_ms: trailing silence that ends a turn (the protocol's ``silence_duration_ms``).
        min_speech_ms: voiced time needed before a start is reported.
        frame_ms: analysis frame; 20 ms matches telephony frames.
        sample_rate: rate of the PCM fed in.
    """

    def __init__(
        self,
        *,
        threshold_dbfs: float = -40.0,
        silence_ms: int = 500,
        min_speech_ms: int = 60,
        frame_ms: int = 20,
        sample_rate: int = ENGINE_RATE,
    ) -> None:
        if frame_ms <= 0 or silence_ms < 0 or min_speech_ms < 0:
            raise ValueError("frame_ms must be positive; silence_ms, min_speech_ms >= 0")
        self.threshold_dbfs = threshold_dbfs
        self.silence_ms = silence_ms
        self.min_speech_ms = min_speech_ms
        self.frame_ms = frame_ms
        self.sample_rate = sample_rate
        self._frame = sample_rate * frame_ms // 1000
        self._threshold_ms_square = (32768.0 * 10 ** (threshold_dbfs / 20)) ** 2
        self._pending = np.zeros(0, dtype=np.int16)
        self._position = 0  # samples already judged
        self._in_speech = False
        self._voiced_run = 0  # samples of consecutive voiced frames (before a start)
        self._onset = 0
        self._silent_run = 0  # samples of consecutive unvoiced frames (during speech)

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def feed(self, pcm: Pcm) -> list[VadEvent]:
        data = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        n_frames = len(data) // self._frame
        events: list[VadEvent] = []
        if n_frames:
            frames = data[: n_frames * self._frame].astype(np.float64).reshape(n_frames, -1)
            voiced = np.mean(frames * frames, axis=1) >= self._threshold_ms_square
            for is_voiced in voiced:
                event = self._step(bool(is_voiced))
                if event is not None:
                    events.append(event)
        self._pending = data[n_frames * self._frame :].copy()
        return events

    def _step(self, voiced: bool) -> VadEvent | None:
        start = self._position
        self._position += self._frame
        if not self._in_speech:
            if not voiced:
                self._voiced_run = 0
                return None
            if self._voiced_run == 0:
                self._onset = start
            self._voiced_run += self._frame
            if self._voiced_run * 1000 >= self.min_speech_ms * self.sample_rate:
                self._in_speech, self._silent_run = True, 0
                return VoiceStarted(self._onset)
            return None
        if voiced:
            self._silent_run = 0
            return None
        self._silent_run += self._frame
        if self._silent_run * 1000 >= self.silence_ms * self.sample_rate:
            self._in_speech, self._voiced_run = False, 0
            return VoiceStopped(self._position)
        return None


def rms_dbfs(pcm: Pcm) -> float:
    """RMS level of ``pcm`` in dBFS (-inf for digital silence); handy in tests and logs."""
    if len(pcm) == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    return -math.inf if rms == 0 else 20 * math.log10(rms / 32768.0)
