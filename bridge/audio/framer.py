"""Cut outbound μ-law into 20 ms frames.

Twilio plays whatever size it gets, but the playback clock counts marks, so every frame we
send is exactly 20 ms (160 bytes at 8 kHz) and the clock has 20 ms resolution.
"""

from __future__ import annotations

from bridge.audio.g711 import ULAW_SILENCE

__all__ = ["FRAME_BYTES", "FRAME_MS", "Framer"]

FRAME_MS = 20
#: 20 ms of 8 kHz μ-law, one byte per sample.
FRAME_BYTES = 160


class Framer:
    """Bytes of any size in, whole frames out; the remainder waits for more or for flush()."""

    def __init__(self, frame_bytes: int = FRAME_BYTES, pad_byte: int = ULAW_SILENCE) -> None:
        if frame_bytes <= 0:
            raise ValueError(f"frame_bytes must be positive, got {frame_bytes}")
        self.frame_bytes = frame_bytes
        self._pad = bytes([pad_byte])
        self._rest = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back, always fewer than one frame."""
        return len(self._rest)

    def push(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Append `data` and return every frame now complete, oldest first."""
        size = self.frame_bytes
        rest = self._rest
        if not rest and len(data) == size:  # the common case: one delta, one frame
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
        """The remainder padded with μ-law silence to a whole frame, or [] if there is none."""
        if not self._rest:
            return []
        frame = bytes(self._rest) + self._pad * (self.frame_bytes - len(self._rest))
        self._rest.clear()
        return [frame]

    def reset(self) -> None:
        """Drop the remainder without sending it, as at barge-in."""
        self._rest.clear()
