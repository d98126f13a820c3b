"""Cut outbound μ-law into 20 ms frames.

Twilio plays whatever size it gets, but the playback clock counts marks, so every frame we
send is exactly 20 ms (160 bytes at 8 kHz) and the clock has 20 ms resolution.

The remainder lives at the start of one preallocated buffer, which the pcm16 pipeline's
kernel also writes μ-law into directly (`reserve` / `commit_b64`); frames leave as slices of
it, or of the pushed bytes themselves when nothing is pending, so a frame is copied once: into
the bytes or base64 text returned.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from bridge.audio.g711 import ULAW_SILENCE

__all__ = ["FRAME_BYTES", "FRAME_MS", "Framer"]

FRAME_MS = 20
#: 20 ms of 8 kHz μ-law, one byte per sample.
FRAME_BYTES = 160

_b2a = binascii.b2a_base64


def _to_b64(frame: memoryview) -> str:
    return _b2a(frame, newline=False).decode("ascii")


def _to_bytes(frame: memoryview) -> bytes:
    return frame.tobytes()


class Framer:
    """Bytes of any size in, whole frames out; the remainder waits for more or for flush()."""

    def __init__(self, frame_bytes: int = FRAME_BYTES, pad_byte: int = ULAW_SILENCE) -> None:
        if frame_bytes <= 0:
            raise ValueError(f"frame_bytes must be positive, got {frame_bytes}")
        self.frame_bytes = frame_bytes
        self._pad_byte = pad_byte
        self._n = 0  # bytes pending, at the start of the buffer
        self._grow(8 * frame_bytes)

    @property
    def pending(self) -> int:
        """Bytes held back, always fewer than one frame."""
        return self._n

    def push(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Append `data` and return every frame now complete, oldest first."""
        if not self._n and len(data) == self.frame_bytes and type(data) is bytes:
            return [data]  # the common case: one delta, one frame (bytes are immutable)
        return self._push(data, _to_bytes)

    def push_b64(self, data: bytes | bytearray | memoryview) -> list[str]:
        """As `push`, each frame base64 encoded (straight from the buffer, no bytes copy)."""
        return self._push(data, _to_b64)

    def flush(self) -> list[bytes]:
        """The remainder padded with μ-law silence to a whole frame, or [] if there is none."""
        return self._flush(_to_bytes)

    def flush_b64(self) -> list[str]:
        """As `flush`, base64 encoded."""
        return self._flush(_to_b64)

    def reset(self) -> None:
        """Drop the remainder without sending it, as at barge-in."""
        self._n = 0

    def reserve(self, extra: int) -> NDArray[np.uint8]:
        """The buffer, with room for `extra` bytes after the `pending` ones, for a writer.

        Write at [pending, pending + extra), then call `commit_b64` with the count written.
        """
        if self._n + extra > len(self._buffer):
            self._grow(max(2 * len(self._buffer), self._n + extra))
        return self._buffer

    def commit_b64(self, written: int) -> list[str]:
        """`written` bytes were put after the pending ones: the whole frames now, base64."""
        total = self._n + written
        size = self.frame_bytes
        if total < size:
            self._n = total
            return []
        if total >= 2 * size:
            return self._take(total, _to_b64)
        view = self._view  # exactly one frame, the common case, inlined
        frames = [_b2a(view[:size], newline=False).decode("ascii")]
        rest = total - size
        if rest:  # from past the frame to the start: never overlapping
            view[:rest] = view[size:total]
        self._n = rest
        return frames

    def _push(self, data: bytes | bytearray | memoryview, encode: Callable) -> list:
        size = self.frame_bytes
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        length = len(view)
        if self._n == 0:  # frames straight from `data`; only the remainder is copied
            count = length // size
            frames = [encode(view[i : i + size]) for i in range(0, count * size, size)]
            rest = length - count * size
            if rest:
                self.reserve(rest)
                self._view[:rest] = view[count * size :]
                self._n = rest
            return frames
        self.reserve(length)
        self._view[self._n : self._n + length] = view
        return self._take(self._n + length, encode)

    def _take(self, total: int, encode: Callable) -> list:
        """The buffer holds `total` bytes: return its whole frames, keep the rest at the start."""
        size = self.frame_bytes
        view = self._view
        if total < size:
            self._n = total
            return []
        count = total // size
        frames = [encode(view[i : i + size]) for i in range(0, count * size, size)]
        rest = total - count * size
        if rest:  # from past the first frame to the start: never overlapping
            view[:rest] = view[count * size : total]
        self._n = rest
        return frames

    def _flush(self, encode: Callable) -> list:
        n = self._n
        if not n:
            return []
        self._buffer[n : self.frame_bytes] = self._pad_byte
        self._n = 0
        return [encode(self._view[: self.frame_bytes])]

    def _grow(self, capacity: int) -> None:
        buffer = np.empty(capacity, dtype=np.uint8)
        if self._n:
            buffer[: self._n] = self._buffer[: self._n]
        self._buffer = buffer
        self._view = memoryview(buffer)
