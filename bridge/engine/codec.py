"""The Realtime protocol's audio wire formats, and conversion to the engine's own PCM.

The engine works on PCM16 mono at 24 kHz (the protocol's native rate). A session may speak
G.711 μ-law at 8 kHz instead; this module maps either wire format to and from the internal
one. The arithmetic itself (bit-exact μ-law, streaming polyphase resamplers) is the bridge's
audio core, :mod:`bridge.audio`, so the engine and the bridge convert audio identically.
"""

from __future__ import annotations

import enum
from typing import Final

import numpy as np
import numpy.typing as npt

from bridge.audio import Resampler8kTo24k, Resampler24kTo8k, ulaw_decode, ulaw_encode

Pcm = npt.NDArray[np.int16]
"""Mono PCM16 samples at :data:`ENGINE_RATE` unless stated otherwise."""

ENGINE_RATE: Final = 24_000
"""The engine's internal sample rate, and the only PCM rate the Realtime protocol accepts."""

G711_RATE: Final = 8_000


class AudioFormat(enum.Enum):
    """A wire format of the Realtime protocol, named neutrally (dialects spell them differently)."""

    PCM16 = "pcm16"
    """Little-endian signed 16-bit PCM, mono, 24 kHz."""
    PCMU = "pcmu"
    """G.711 μ-law, mono, 8 kHz, one byte per sample."""

    @property
    def sample_rate(self) -> int:
        return ENGINE_RATE if self is AudioFormat.PCM16 else G711_RATE

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self is AudioFormat.PCM16 else 1

    @property
    def bytes_per_ms(self) -> int:
        """Bytes of one millisecond: 48 for PCM16 at 24 kHz, 8 for μ-law at 8 kHz."""
        return self.sample_rate // 1000 * self.bytes_per_sample

    def duration_ms(self, n_bytes: int) -> float:
        return n_bytes / self.bytes_per_ms


def pcm16_decode(data: bytes) -> Pcm:
    """Little-endian PCM16 bytes → samples; an odd trailing byte is ignored."""
    return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)


def pcm16_encode(pcm: Pcm) -> bytes:
    return pcm.astype("<i2").tobytes()


class InputDecoder:
    """Caller audio in one wire format → PCM16 24 kHz, however the client chunks it.

    Keeps the state that spans appends: half a PCM16 sample, or the resampler's history
    (so μ-law input gives exactly three engine samples per byte, whatever the chunking).
    """

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._carry = b""
        self._upsampler = Resampler8kTo24k() if fmt is AudioFormat.PCMU else None

    def decode(self, data: bytes) -> Pcm:
        if self._upsampler is None:
            data = self._carry + data
            self._carry = data[len(data) - len(data) % 2 :]
            return pcm16_decode(data)
        return self._upsampler.process(ulaw_decode(data))


def encode_output(pcm24k: Pcm, fmt: AudioFormat) -> bytes:
    """A whole utterance of PCM16 24 kHz → the wire bytes of ``fmt``.

    μ-law output has exactly ``len(pcm24k) // 3`` bytes, so ``ms`` milliseconds of engine
    audio are ``ms`` milliseconds on the wire in either format.
    """
    if fmt is AudioFormat.PCM16:
        return pcm16_encode(pcm24k)
    return ulaw_encode(Resampler24kTo8k().process(pcm24k.astype(np.int16, copy=False)))
