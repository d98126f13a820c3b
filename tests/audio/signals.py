"""Test signals and measurements shared by the audio tests (not a test module)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.signal.windows import blackmanharris

FULL_SCALE = 32768.0


def tone(
    freq_hz: float, rate: int, n: int, dbfs: float, delay_s: float = 0.0, phase: float = 0.0
) -> NDArray[np.float64]:
    """An ideal sine of peak level `dbfs`, optionally delayed, as floats."""
    t = np.arange(n) / rate - delay_s
    return FULL_SCALE * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq_hz * t + phase)


def to_int16(x: NDArray[np.float64]) -> NDArray[np.int16]:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def amplitude_spectrum(x: NDArray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Peak amplitude per FFT bin (as a fraction of bins), Blackman–Harris windowed.

    The window's −92 dB sidelobes keep a loud tone from leaking into the bins where a
    −60 dB image or alias is measured. Pass whole seconds so integer-Hz tones sit on bins
    (no scalloping loss in the ±0.5 dB checks).
    """
    w = blackmanharris(len(x))
    spectrum = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64) * w)) * 2 / w.sum()
    return np.fft.rfftfreq(len(x)), spectrum


def amplitude_at(x: NDArray, freq_hz: float, rate: int) -> float:
    """Peak amplitude of the component at `freq_hz` (windowed, so other tones do not leak)."""
    freqs, spectrum = amplitude_spectrum(x)
    near = np.abs(freqs * rate - freq_hz) <= 2 * rate / len(x)
    return float(spectrum[near].max())


def db(ratio: float) -> float:
    return float(20 * np.log10(ratio))


def snr_db(ideal: NDArray, actual: NDArray) -> float:
    ideal = np.asarray(ideal, dtype=np.float64)
    error = np.asarray(actual, dtype=np.float64) - ideal
    if not error.any():
        return float("inf")
    return float(10 * np.log10(np.sum(ideal**2) / np.sum(error**2)))


def random_spans(total: int, rng: np.random.Generator, largest: int) -> list[tuple[int, int]]:
    """(start, stop) chunks covering `total`: empty, 1-sample, tiny and large (over a block)."""
    spans, pos = [], 0
    while pos < total:
        kind = rng.integers(0, 4)
        size = (0, 1, int(rng.integers(2, 8)), int(rng.integers(8, largest)))[kind]
        spans.append((pos, min(total, pos + size)))
        pos = spans[-1][1]
    return spans
