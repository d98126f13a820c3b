"""Test audio for simulated callers: silence, tones and speech-like bursts in μ-law.

Everything here is 8 kHz mono, as Twilio carries it. The codec is the product's own
(`bridge.audio.g711`); the emulator only uses it to make and measure test signals and treats
the bridge's payloads as opaque bytes, so sharing it hides no bug.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from bridge.audio.g711 import ULAW_SILENCE, ulaw_decode, ulaw_encode

__all__ = [
    "BYTES_PER_MS",
    "SAMPLE_RATE",
    "ULAW_SILENCE",
    "rms_dbfs",
    "silence",
    "speech_like",
    "tone",
    "write_wav",
]

SAMPLE_RATE = 8000
"""Twilio Media Streams carry 8 kHz mono μ-law, one byte per sample."""

BYTES_PER_MS = SAMPLE_RATE // 1000


def silence(ms: float) -> bytes:
    """μ-law digital silence lasting `ms` milliseconds."""
    return bytes([ULAW_SILENCE]) * _samples(ms)


def tone(ms: float, *, freq_hz: float = 440.0, level_dbfs: float = -12.0) -> bytes:
    """A pure sine tone: easy to find again in what the other side heard."""
    t = np.arange(_samples(ms)) / SAMPLE_RATE
    return ulaw_encode(_to_int16(np.sin(2 * np.pi * freq_hz * t), level_dbfs))


def speech_like(ms: float, *, level_dbfs: float = -16.0, seed: int = 0) -> bytes:
    """A voiced, syllable-modulated burst that voice activity detectors take for speech.

    Harmonics of a gliding ~120 Hz fundamental with a little breath noise, switched on and
    off at a syllable rate of ~4 Hz, with 10 ms fades so the burst has no clicks. It is
    deterministic for a given `seed`.
    """
    n = _samples(ms)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 110.0 + 20.0 * rng.random() + 15.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 16) if k * 130.0 < SAMPLE_RATE / 2)
    signal = voiced + 0.05 * rng.standard_normal(n)
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.random() * np.pi) ** 2
    return ulaw_encode(_to_int16(signal * syllables * _fades(n), level_dbfs))


def rms_dbfs(ulaw: bytes) -> float:
    """Level of μ-law audio in dB relative to full scale (-inf for digital silence)."""
    if not ulaw:
        return float("-inf")
    pcm = ulaw_decode(ulaw).astype(np.float64)
    rms = float(np.sqrt(np.mean(pcm**2)))
    return 20 * np.log10(rms / 32768.0) if rms > 0 else float("-inf")


def write_wav(path: str | Path, ulaw: bytes) -> None:
    """Save μ-law audio as a 16-bit PCM WAV that any player opens."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(ulaw_decode(ulaw).astype("<i2").tobytes())


def _samples(ms: float) -> int:
    if ms < 0:
        raise ValueError(f"duration must not be negative, got {ms} ms")
    return round(ms * BYTES_PER_MS)


def _fades(n: int) -> np.ndarray:
    ramp = min(n // 2, 10 * BYTES_PER_MS)
    envelope = np.ones(n)
    if ramp:
        edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
        envelope[:ramp] = edge
        envelope[n - ramp :] = edge[::-1]
    return envelope


def _to_int16(signal: np.ndarray, level_dbfs: float) -> np.ndarray:
    """Scale a signal so its RMS sits at `level_dbfs`, clipped to int16."""
    rms = float(np.sqrt(np.mean(signal**2))) if signal.size else 0.0
    if rms == 0:
        return np.zeros(signal.shape, dtype=np.int16)
    scaled = signal * (32768.0 * 10 ** (level_dbfs / 20) / rms)
    return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)
