"""Speech synthesis: text → PCM16 24 kHz."""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Protocol

import numpy as np

from bridge.engine.codec import ENGINE_RATE, Pcm


class Voice(Protocol):
    def synthesize(self, text: str, *, voice: str) -> Pcm | Awaitable[Pcm]:
        """Audio of ``text`` in the named voice; may be a coroutine."""
        ...


def tone(
    ms: float, *, hz: float = 440.0, dbfs: float = -12.0, sample_rate: int = ENGINE_RATE
) -> Pcm:
    """A sine of exactly ``round(ms * sample_rate / 1000)`` samples, peak at ``dbfs``.

    Recognisable in a recording (one spectral line) and trivially measurable in tests.
    """
    n = round(ms * sample_rate / 1000)
    amplitude = 32767 * 10 ** (dbfs / 20)
    t = np.arange(n, dtype=np.float64) / sample_rate
    return np.rint(amplitude * np.sin(2 * math.pi * hz * t)).astype(np.int16)


class ToneVoice:
    """Speaks every text as a tone whose length grows with the text: a stand-in for TTS.

    Parameters:
        ms_per_char: duration per character of text (about a speaking rate of 14 chars/s).
        min_ms: shortest utterance, so even "ok" is audible.
        hz, dbfs: the tone's pitch and peak level.
    """

    def __init__(
        self,
        *,
        ms_per_char: float = 70.0,
        min_ms: float = 300.0,
        hz: float = 440.0,
        dbfs: float = -12.0,
    ) -> None:
        self.ms_per_char, self.min_ms, self.hz, self.dbfs = ms_per_char, min_ms, hz, dbfs

    def synthesize(self, text: str, *, voice: str) -> Pcm:
        ms = max(self.min_ms, self.ms_per_char * len(text))
        return tone(ms, hz=self.hz, dbfs=self.dbfs)
