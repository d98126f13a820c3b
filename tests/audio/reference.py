"""The pure-numpy audio path as it was before the compiled kernels, kept as a reference.

Frozen copy of the float32 matmul resamplers (and the pipeline built from them) that
bridge/audio used until issue #10. The tests compare the kernels with it on random signals,
and bench/audio.py times it for the before/after table. Not product code: nothing in bridge/
imports it. Its sums are float32 in BLAS order, so it is within 1 LSB of the exact filter
output; the kernels' float64 sums give the exact (correctly rounded) output, hence the
kernels differ from this path by at most 1 LSB, on a fraction of a percent of samples.
"""

from __future__ import annotations

import binascii

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

from bridge.audio.g711 import ULAW_DECODE_TABLE, ULAW_ENCODE_TABLE, ULAW_SILENCE
from bridge.audio.resample import HIGH_RATE_HZ, RATIO, design_lowpass

__all__ = ["NumpyPcm16Pipeline", "NumpyResampler8kTo24k", "NumpyResampler24kTo8k"]

_DTYPE = np.float32  # int16 samples are exact in float32; the 23–69 tap sums stay well < 1 LSB
_INT16_MIN = _DTYPE(-32768)
_INT16_MAX = _DTYPE(32767)


def _to_int16(values: NDArray[np.float32], out: NDArray[np.int16]) -> NDArray[np.int16]:
    """Round to nearest and saturate, in place on `values`; filter overshoot must not wrap."""
    np.rint(values, out=values)
    values.clip(_INT16_MIN, _INT16_MAX, out=values)  # the method: half the cost of np.clip
    np.copyto(out, values, casting="unsafe")
    return out


class _StreamingResampler:
    """What both directions share: byte input with an odd byte carried, drain and reset."""

    #: Input samples per internal block; bounds the scratch buffers for any chunk size.
    block: int

    def __init__(self) -> None:
        self._odd = b""  # half of an int16 sample split across two byte chunks
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
        if self._odd:
            raise ValueError("half a sample is pending from process_bytes(); do not mix the two")
        return self._process(samples)

    def process_bytes(self, data: bytes | bytearray | memoryview) -> bytes:
        """Resample little-endian PCM16 bytes; an odd trailing byte waits for the next call."""
        if self._odd:
            data = self._odd + bytes(data)
        n = len(data) // 2
        self._odd = bytes(data[2 * n :])
        samples = np.frombuffer(data, dtype="<i2", count=n)
        return self._process(samples).astype("<i2", copy=False).tobytes()

    def drain(self) -> NDArray[np.int16]:
        """Push zeros until every sample given has left the filter, then reset.

        For the end of a stream: without it the last ~1.3–1.4 ms stays inside the filter.
        Returns an empty array if nothing was fed since the last reset; a pending half sample
        is dropped, as it cannot be played.
        """
        if not self._fed:
            self.reset()
            return np.empty(0, dtype=np.int16)
        self._odd = b""
        tail = self._process(np.zeros(self._drain_length(), dtype=np.int16))
        self.reset()
        return tail

    def reset(self) -> None:
        """Forget history, phase and any half sample, as at barge-in."""
        self._odd = b""
        self._fed = False
        self._reset_filter()

    def _process(self, samples: NDArray[np.int16]) -> NDArray[np.int16]:
        raise NotImplementedError

    def _drain_length(self) -> int:
        raise NotImplementedError

    def _reset_filter(self) -> None:
        raise NotImplementedError


class NumpyResampler8kTo24k(_StreamingResampler):
    """8 kHz → 24 kHz for caller audio: 3 outputs per input sample, exactly.

    Polyphase: output 3n + p is phase p's 23 taps dotted with the 23 newest inputs up to n,
    so each chunk is one matmul of a sliding-window view of the history buffer.
    """

    def __init__(self, block: int = 480) -> None:
        super().__init__()
        taps = design_lowpass()
        self.block = block
        self._taps_per_phase = len(taps) // RATIO
        self._history = self._taps_per_phase - 1
        # Column p holds phase p's taps, oldest input first; ×3 restores the gain that
        # zero-stuffing takes away.
        self._weights = np.ascontiguousarray(
            (RATIO * taps).reshape(self._taps_per_phase, RATIO)[::-1], dtype=_DTYPE
        )
        self._buffer = np.zeros(self._history + block, dtype=_DTYPE)
        item = self._buffer.itemsize
        self._windows = as_strided(
            self._buffer, (block, self._taps_per_phase), (item, item), writeable=False
        )
        self._scratch = np.empty((block, RATIO), dtype=_DTYPE)
        self._delay_samples_24k = (len(taps) - 1) // 2

    @property
    def group_delay_ms(self) -> float:
        """Output lags input by (taps − 1) / 2 samples at 24 kHz: 34 samples, 1.42 ms."""
        return 1000.0 * self._delay_samples_24k / HIGH_RATE_HZ

    def output_count(self, n_in: int) -> int:
        return RATIO * n_in

    def _process(self, samples: NDArray[np.int16]) -> NDArray[np.int16]:
        n = len(samples)
        result = np.empty(RATIO * n, dtype=np.int16)
        if n == 0:
            return result
        self._fed = True
        h, buf = self._history, self._buffer
        for start in range(0, n, self.block):
            chunk = samples[start : start + self.block]
            m = len(chunk)
            np.copyto(buf[h : h + m], chunk, casting="unsafe")
            out = self._scratch[:m]
            np.matmul(self._windows[:m], self._weights, out=out)
            _to_int16(out.reshape(-1), result[RATIO * start : RATIO * (start + m)])
            buf[:h] = buf[m : m + h]
        return result

    def _drain_length(self) -> int:
        return self._history

    def _reset_filter(self) -> None:
        self._buffer[: self._history] = 0.0


class NumpyResampler24kTo8k(_StreamingResampler):
    """24 kHz → 8 kHz for model audio: one output per 3 inputs, the remainder carried.

    Output m is the 69-tap filter over the inputs up to 3m + 2, i.e. it is emitted as soon as
    the last sample of its triplet arrives, so ⌊total / 3⌋ outputs exist at any moment.
    """

    def __init__(self, block: int = 480) -> None:
        super().__init__()
        if block % RATIO:
            raise ValueError(f"block must be a multiple of {RATIO}, got {block}")
        taps = design_lowpass()
        self.block = block
        self._num_taps = len(taps)
        # The first output's window holds num_taps − 3 samples of (silent) history.
        self._lead = self._num_taps - RATIO
        self._weights = np.ascontiguousarray(taps[::-1], dtype=_DTYPE)
        self._buffer = np.zeros(self._num_taps - 1 + block, dtype=_DTYPE)
        self._fill = self._lead
        max_out = (len(self._buffer) - self._num_taps) // RATIO + 1
        item = self._buffer.itemsize
        self._windows = as_strided(
            self._buffer, (max_out, self._num_taps), (RATIO * item, item), writeable=False
        )
        # The window view overlaps itself, which BLAS cannot read; copying it into a
        # contiguous matrix first and then one gemv is about twice as fast as without.
        self._matrix = np.empty((max_out, self._num_taps), dtype=_DTYPE)
        self._scratch = np.empty(max_out, dtype=_DTYPE)
        self._delay_samples_24k = (self._num_taps - 1) // 2 - (RATIO - 1)

    @property
    def group_delay_ms(self) -> float:
        """Output lags input by (taps − 1) / 2 − 2 samples at 24 kHz: 32 samples, 1.33 ms."""
        return 1000.0 * self._delay_samples_24k / HIGH_RATE_HZ

    @property
    def pending(self) -> int:
        """Input samples (0–2) waiting for the rest of their triplet."""
        return self._fill - self._lead

    def output_count(self, n_in: int) -> int:
        return (self.pending + n_in) // RATIO

    def _process(self, samples: NDArray[np.int16]) -> NDArray[np.int16]:
        n = len(samples)
        result = np.empty(self.output_count(n), dtype=np.int16)
        if n == 0:
            return result
        self._fed = True
        buf, lead, pos = self._buffer, self._lead, 0
        for start in range(0, n, self.block):
            chunk = samples[start : start + self.block]
            m = len(chunk)
            fill = self._fill
            np.copyto(buf[fill : fill + m], chunk, casting="unsafe")
            fill += m
            k = (fill - lead) // RATIO
            if k:
                matrix, out = self._matrix[:k], self._scratch[:k]
                np.copyto(matrix, self._windows[:k])
                np.matmul(matrix, self._weights, out=out)
                _to_int16(out, result[pos : pos + k])
                pos += k
                consumed = RATIO * k
                buf[: fill - consumed] = buf[consumed:fill]
                fill -= consumed
            self._fill = fill
        return result

    def _drain_length(self) -> int:
        # Enough zeros that the history left behind holds no real sample at all.
        pending = self.pending
        zeros = self._lead
        while zeros < self._lead + (pending + zeros) % RATIO:
            zeros += 1
        return zeros

    def _reset_filter(self) -> None:
        self._buffer[: self._lead] = 0.0
        self._fill = self._lead


class _NumpyFramer:
    """The framer as it was: a bytearray remainder."""

    def __init__(self, frame_bytes: int = 160, pad_byte: int = ULAW_SILENCE) -> None:
        self.frame_bytes = frame_bytes
        self._pad = bytes([pad_byte])
        self._rest = bytearray()

    def push(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        size = self.frame_bytes
        rest = self._rest
        if not rest and len(data) == size:
            return [bytes(data)]
        rest += data
        count = len(rest) // size
        if count == 0:
            return []
        with memoryview(rest) as view:
            frames = [view[i * size : (i + 1) * size].tobytes() for i in range(count)]
        del rest[: count * size]
        return frames

    def flush(self) -> list[bytes]:
        if not self._rest:
            return []
        frame = bytes(self._rest) + self._pad * (self.frame_bytes - len(self._rest))
        self._rest.clear()
        return [frame]

    def reset(self) -> None:
        self._rest.clear()


def _b64decode(text: str, what: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except ValueError as exc:
        raise ValueError(f"{what} is not valid base64: {exc}") from exc


def _b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _ulaw_decode(data: bytes) -> NDArray[np.int16]:
    return ULAW_DECODE_TABLE.take(np.frombuffer(data, dtype=np.uint8))


def _ulaw_encode(samples: NDArray[np.int16]) -> bytes:
    return ULAW_ENCODE_TABLE.take(samples.view(np.uint16)).tobytes()


class NumpyPcm16Pipeline:
    """The pcm16 pipeline as it was: numpy μ-law tables, the resamplers above, the framer."""

    upstream_format = "pcm16"
    upstream_bytes_per_ms = 48

    def __init__(self) -> None:
        self._up = NumpyResampler8kTo24k()
        self._down = NumpyResampler24kTo8k()
        self._framer = _NumpyFramer()

    def inbound(self, payload_b64: str) -> str:
        pcm8k = _ulaw_decode(_b64decode(payload_b64, "Twilio media payload"))
        pcm24k = self._up.process(pcm8k)
        return _b64encode(pcm24k.astype("<i2", copy=False).tobytes())

    def outbound(self, delta_b64: str) -> list[str]:
        pcm24k = _b64decode(delta_b64, "Realtime audio delta")
        pcm8k = np.frombuffer(self._down.process_bytes(pcm24k), dtype="<i2")
        return [_b64encode(frame) for frame in self._framer.push(_ulaw_encode(pcm8k))]

    def flush(self) -> list[str]:
        frames = self._framer.push(_ulaw_encode(self._down.drain()))
        frames += self._framer.flush()
        return [_b64encode(frame) for frame in frames]

    def reset_outbound(self) -> None:
        self._down.reset()
        self._framer.reset()
