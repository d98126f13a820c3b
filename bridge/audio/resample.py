"""Streaming 8 kHz ↔ 24 kHz resampling with one fixed polyphase FIR.

Resampling each 20 ms chunk on its own (a fresh `resample_poly` per frame) leaves boundary
transients and drifting lengths; these classes instead keep the input history and the phase
between calls, so any chunking gives the same samples as one call on the whole signal, and
the output count is exact: ×3 up, and ⌊total/3⌋ down with the remainder carried.

One lowpass serves both directions. Telephone audio stops at 3.4 kHz and, after ×3, its first
image starts at 8000 − 3400 = 4.6 kHz; going ÷3, anything above 4.6 kHz would alias into the
telephone band. So a 3.4 → 4.6 kHz transition is enough, and an equiripple design reaches
65 dB there with 69 taps (23 per phase), about 1.4 ms of delay.

The filter is designed here, once, with `scipy.signal.remez`; the streaming convolution runs
in the compiled kernels of `bridge.audio._kernels` (float64 sums, so the output is the
correctly rounded filter output and bit-identical under any chunking).
"""

from __future__ import annotations

import functools
import sys

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from bridge.audio import _kernels
from bridge.audio._kernels import (
    BLOCK,
    DOWN_STATE_SHAPE,
    HISTORY,
    ODD_FLAG,
    PENDING,
    TAPS_PER_PHASE,
    UP_STATE_SHAPE,
)
from bridge.audio.g711 import ULAW_DECODE_TABLE, ULAW_ENCODE_TABLE
from bridge.audio.workspace import PER_THREAD

__all__ = [
    "HIGH_RATE_HZ",
    "LOW_RATE_HZ",
    "NUM_TAPS",
    "PASSBAND_HZ",
    "RATIO",
    "STOPBAND_HZ",
    "STOPBAND_WEIGHT",
    "Resampler8kTo24k",
    "Resampler24kTo8k",
    "design_lowpass",
]

LOW_RATE_HZ = 8000
HIGH_RATE_HZ = 24000
RATIO = HIGH_RATE_HZ // LOW_RATE_HZ
#: Top of the telephone band; kept flat to ±0.014 dB (gain error 0.16 %, −56 dB), so the filter
#: costs a μ-law signal (≈ 38 dB SNR) nothing measurable.
PASSBAND_HZ = 3400.0
#: Where images (×3) and would-be aliases (÷3) begin; attenuated by ≥ 65 dB from here on.
STOPBAND_HZ = 4600.0
#: Odd, so the delay is a whole number of 24 kHz samples; a multiple of 3, so phases are equal.
NUM_TAPS = 69
#: Relative weight of stopband error in the equiripple fit. Heavier buys stopband depth with
#: passband ripple; ripple looks harmless (±0.5 dB is inaudible) but it is a gain error that
#: every SNR against the ideal signal counts, so 3 keeps both errors far below μ-law's own.
STOPBAND_WEIGHT = 3.0


@functools.cache
def design_lowpass(
    num_taps: int = NUM_TAPS,
    passband_hz: float = PASSBAND_HZ,
    stopband_hz: float = STOPBAND_HZ,
    stopband_weight: float = STOPBAND_WEIGHT,
) -> NDArray[np.float64]:
    """The shared 24 kHz lowpass (unity passband gain); designed once per process, read-only."""
    if num_taps % 2 != 1 or num_taps % RATIO != 0:
        raise ValueError(f"num_taps must be odd and a multiple of {RATIO}, got {num_taps}")
    taps = signal.remez(
        num_taps,
        [0.0, passband_hz, stopband_hz, HIGH_RATE_HZ / 2],
        [1.0, 0.0],
        weight=[1.0, stopband_weight],
        fs=HIGH_RATE_HZ,
    )
    taps.flags.writeable = False
    return taps


def phase_weights(taps: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The 69 taps as the kernels read them: (upsampler, downsampler), each (3, 23).

    Up: row p is phase p's taps for its 23 inputs, oldest first, times 3 (the gain that
    zero-stuffing takes away). Down: row r, column q is the tap for input 3(m + q) + r of
    output m's window, which starts 66 samples before output m's triplet.
    """
    up = (RATIO * taps).reshape(TAPS_PER_PHASE, RATIO)[::-1].T
    down = taps[::-1].reshape(TAPS_PER_PHASE, RATIO).T
    return np.ascontiguousarray(up), np.ascontiguousarray(down)


#: The compiled kernels, built once per process at import (see `bridge.audio._kernels`).
KERNELS = _kernels.build_kernels(
    *phase_weights(design_lowpass()), ULAW_DECODE_TABLE, ULAW_ENCODE_TABLE
)

_LITTLE_ENDIAN = sys.byteorder == "little"


def _as_int16(samples: NDArray[np.integer]) -> NDArray[np.int16]:
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        # int8/uint8 are fine; anything that might not fit (int32, floats) is refused
        # rather than wrapped or truncated.
        samples = samples.astype(np.int16, casting="safe")
    return samples


class _StreamingResampler:
    """What both directions share: byte input with an odd byte carried, drain and reset."""

    #: Input samples per internal block of the kernel (the size of its window).
    block: int

    def __init__(self) -> None:
        # Kernel state, allocated once and only ever changed in place (the pipeline keeps
        # references): [ODD_FLAG, ODD_BYTE, PENDING]; see bridge.audio._kernels.
        self._istate = np.zeros(_kernels.ISTATE_SIZE, dtype=np.int64)
        self._fed = False  # anything since the last reset, so drain() of nothing is nothing

    @property
    def group_delay_ms(self) -> float:
        """How far the output lags the input; callers align and budget latency with it."""
        raise NotImplementedError

    def output_count(self, n_in: int) -> int:
        """How many samples the next `process` of `n_in` samples returns."""
        raise NotImplementedError

    def process(self, samples: NDArray[np.int16]) -> NDArray[np.int16]:
        """Resample the next chunk of int16 samples (any length, even 0) to a new array."""
        if self._istate[ODD_FLAG]:
            raise ValueError("half a sample is pending from process_bytes(); do not mix the two")
        return self._run(_as_int16(samples).astype("<i2", copy=False).tobytes())

    def process_bytes(self, data: bytes | bytearray | memoryview) -> bytes:
        """Resample little-endian PCM16 bytes; an odd trailing byte waits for the next call."""
        out = self._run(data if type(data) is bytes else bytes(data))
        return out.astype("<i2", copy=False).tobytes()

    def drain(self) -> NDArray[np.int16]:
        """Push zeros until every sample given has left the filter, then reset.

        For the end of a stream: without it the last ~1.3–1.4 ms stays inside the filter.
        Returns an empty array if nothing was fed since the last reset; a pending half sample
        is dropped, as it cannot be played.
        """
        if not self._fed:
            self.reset()
            return np.empty(0, dtype=np.int16)
        tail = self._run(self._drain_bytes())
        self.reset()
        return tail

    def reset(self) -> None:
        """Forget history, phase and any half sample, as at barge-in."""
        self._istate[:] = 0
        self._fed = False
        self._reset_filter()

    def _note_input(self, data: bytes) -> None:
        """Record that `data` completes at least one sample, for drain()."""
        if len(data) > 1 or (data and self._istate[ODD_FLAG]):
            self._fed = True

    def _drain_bytes(self) -> bytes:
        """The zeros that flush the filter, with any half sample dropped first."""
        self._istate[ODD_FLAG] = 0
        return bytes(2 * self._drain_length())

    def _run(self, data: bytes) -> NDArray[np.int16]:
        raise NotImplementedError

    def _drain_length(self) -> int:
        raise NotImplementedError

    def _reset_filter(self) -> None:
        raise NotImplementedError


class Resampler8kTo24k(_StreamingResampler):
    """8 kHz → 24 kHz for caller audio: 3 outputs per input sample, exactly.

    Polyphase: output 3n + p is phase p's 23 taps dotted with the 23 newest inputs up to n.
    """

    block = BLOCK

    def __init__(self) -> None:
        super().__init__()
        #: The kernel's input history: HISTORY past samples (the window is the thread's).
        self._h = np.zeros(UP_STATE_SHAPE, dtype=np.float64)
        self._delay_samples_24k = (NUM_TAPS - 1) // 2

    @property
    def group_delay_ms(self) -> float:
        """Output lags input by (taps − 1) / 2 samples at 24 kHz: 34 samples, 1.42 ms."""
        return 1000.0 * self._delay_samples_24k / HIGH_RATE_HZ

    def output_count(self, n_in: int) -> int:
        return RATIO * n_in

    def _run(self, data: bytes) -> NDArray[np.int16]:
        if not self._fed:
            self._note_input(data)
        out = np.empty(RATIO * ((len(data) + int(self._istate[ODD_FLAG])) // 2), dtype=np.int16)
        KERNELS.upsample(data, False, self._h, PER_THREAD.workspace.up_window, self._istate, out)
        return out

    def _drain_length(self) -> int:
        return HISTORY

    def _reset_filter(self) -> None:
        self._h[:] = 0.0


class Resampler24kTo8k(_StreamingResampler):
    """24 kHz → 8 kHz for model audio: one output per 3 inputs, the remainder carried.

    Output m is the 69-tap filter over the inputs up to 3m + 2, i.e. it is emitted as soon as
    the last sample of its triplet arrives, so ⌊total / 3⌋ outputs exist at any moment.
    """

    block = RATIO * BLOCK

    def __init__(self) -> None:
        super().__init__()
        #: What the kernel keeps, de-interleaved: rows 0–2 (phase) by HISTORY past triplets
        #: and the one being filled (the window is the thread's).
        self._h = np.zeros(DOWN_STATE_SHAPE, dtype=np.float64)
        # The first output's window holds num_taps − 3 samples of (silent) history.
        self._lead = NUM_TAPS - RATIO
        self._delay_samples_24k = (NUM_TAPS - 1) // 2 - (RATIO - 1)

    @property
    def group_delay_ms(self) -> float:
        """Output lags input by (taps − 1) / 2 − 2 samples at 24 kHz: 32 samples, 1.33 ms."""
        return 1000.0 * self._delay_samples_24k / HIGH_RATE_HZ

    @property
    def pending(self) -> int:
        """Input samples (0–2) waiting for the rest of their triplet."""
        return int(self._istate[PENDING])

    def output_count(self, n_in: int) -> int:
        return (self.pending + n_in) // RATIO

    def _run(self, data: bytes) -> NDArray[np.int16]:
        if not self._fed:
            self._note_input(data)
        n = (len(data) + int(self._istate[ODD_FLAG])) // 2
        out = np.empty(2 * self.output_count(n), dtype=np.uint8)
        window = PER_THREAD.workspace.down_window
        KERNELS.downsample(data, self._h, window, self._istate, False, out, 0)
        samples = out.view("<i2")
        return samples if _LITTLE_ENDIAN else samples.astype(np.int16)

    def _drain_length(self) -> int:
        # Enough zeros that the history left behind holds no real sample at all: the lead,
        # plus whatever completes the pending triplet.
        return self._lead + (-self.pending) % RATIO

    def _reset_filter(self) -> None:
        self._h[:] = 0.0
