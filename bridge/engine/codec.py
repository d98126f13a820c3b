"""The Realtime protocol's audio wire formats, and conversion to the engine's own PCM.

The engine works on PCM16 mono at 24 kHz (the protocol's native rate). A session may speak
G.711 μ-law at 8 kHz instead; this module maps either wire format (an
:class:`~bridge.audio_format.AudioFormat`) to and from the internal one. The arithmetic itself
(bit-exact μ-law, streaming polyphase resamplers) is the bridge's audio core,
:mod:`bridge.audio`, so the engine and the bridge convert audio identically.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from bridge.audio import Resampler8kTo24k, Resampler24kTo8k, ulaw_decode, ulaw_encode
from bridge.audio_format import PCM16_RATE, AudioFormat

Pcm = npt.NDArray[np.int16]
"""Mono PCM16 samples at :data:`ENGINE_RATE` unless stated otherwise."""

ENGINE_RATE: Final = PCM16_RATE
"""The engine's internal sample rate, and the only PCM rate the Realtime protocol accepts."""


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
