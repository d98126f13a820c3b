"""Audio formats of the Realtime protocol and the conversions the engine needs.

The engine works internally on PCM16 mono at 24 kHz (the Realtime protocol's native rate).
Callers may speak G.711 μ-law at 8 kHz instead; this module turns either wire format into
the internal one and back. Everything is numpy and table-driven: a 20 ms frame costs
microseconds, and nothing here depends on the deprecated ``audioop`` module.
"""

from __future__ import annotations

import enum
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import signal

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


# --- G.711 μ-law -------------------------------------------------------------------------
# Tables are built once from the reference algorithm (ITU-T G.711 / Sun's g711.c), so
# encoding and decoding are single numpy lookups.

_ULAW_BIAS: Final = 0x84
_ULAW_BIAS14: Final = 0x21
_ULAW_CLIP14: Final = 8159


def _build_ulaw_decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _build_ulaw_encode_table() -> npt.NDArray[np.uint8]:
    # Sun's g711.c on 14-bit magnitudes (as audioop did), for bit-exact agreement.
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), _ULAW_CLIP14) + _ULAW_BIAS14
    segment_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(segment_ends, magnitude)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return ((code ^ mask) & 0xFF).astype(np.uint8)


_ULAW_DECODE: Final = _build_ulaw_decode_table()
_ULAW_ENCODE: Final = _build_ulaw_encode_table()


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """μ-law bytes → PCM16 samples at the same (8 kHz) rate."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """PCM16 samples → μ-law bytes at the same rate."""
    return _ULAW_ENCODE[pcm.astype(np.int32) + 32768].tobytes()


# --- PCM16 -------------------------------------------------------------------------------


def pcm16_decode(data: bytes) -> Pcm:
    """Little-endian PCM16 bytes → samples. An odd trailing byte is the caller's to keep."""
    return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)


def pcm16_encode(pcm: Pcm) -> bytes:
    return pcm.astype("<i2").tobytes()


# --- rate conversion between 8 kHz and 24 kHz ----------------------------------------------

_RATIO: Final = ENGINE_RATE // G711_RATE
_FIR_TAPS_PER_PHASE: Final = 32
_FIR: Final = signal.firwin(
    _FIR_TAPS_PER_PHASE * _RATIO, cutoff=0.9 / _RATIO, window=("kaiser", 8.0)
).astype(np.float64)


class Upsampler:
    """Streaming 8 kHz → 24 kHz conversion that gives the same output however input is chunked.

    Calling ``resample_poly`` per chunk restarts the filter at every boundary (audible buzz,
    drifting lengths); this carries the FIR state across calls instead, so exactly three
    output samples come out per input sample and chunk boundaries are inaudible.
    """

    def __init__(self) -> None:
        self._zi = np.zeros(len(_FIR) - 1, dtype=np.float64)

    def process(self, pcm8k: npt.NDArray[np.int16]) -> Pcm:
        if len(pcm8k) == 0:
            return np.zeros(0, dtype=np.int16)
        stuffed = np.zeros(len(pcm8k) * _RATIO, dtype=np.float64)
        stuffed[::_RATIO] = pcm8k * float(_RATIO)
        out, self._zi = signal.lfilter(_FIR, 1.0, stuffed, zi=self._zi)
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def downsample_24k_to_8k(pcm24k: Pcm) -> npt.NDArray[np.int16]:
    """Whole-utterance 24 kHz → 8 kHz; ``len(out) == ceil(len(in) / 3)``.

    Used for synthesized output, which the engine always holds in full, so a one-shot
    polyphase filter over the whole signal is exact and simplest.
    """
    if len(pcm24k) == 0:
        return np.zeros(0, dtype=np.int16)
    out = signal.resample_poly(pcm24k.astype(np.float64), 1, _RATIO, window=("kaiser", 8.0))
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


class InputDecoder:
    """Wire bytes of one input format → PCM16 24 kHz, keeping partial samples between calls."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._carry = b""
        self._upsampler = Upsampler() if fmt is AudioFormat.PCMU else None

    def decode(self, data: bytes) -> Pcm:
        if self._upsampler is None:
            data = self._carry + data
            self._carry = data[len(data) - len(data) % 2 :]
            return pcm16_decode(data)
        return self._upsampler.process(ulaw_decode(data))


def encode_output(pcm24k: Pcm, fmt: AudioFormat) -> bytes:
    """PCM16 24 kHz → the wire bytes of ``fmt`` (whole utterance at once)."""
    if fmt is AudioFormat.PCM16:
        return pcm16_encode(pcm24k)
    return ulaw_encode(downsample_24k_to_8k(pcm24k))
