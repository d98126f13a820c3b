"""The input audio buffer: caller audio not yet committed, placed on the input timeline."""

from __future__ import annotations

import numpy as np

from bridge.engine.codec import ENGINE_RATE, Pcm
from bridge.engine.items import empty_pcm


class InputAudioBuffer:
    """Uncommitted PCM16 24 kHz audio, addressed by absolute sample offsets.

    Chunks are kept as appended and joined only when a turn is taken, so a long turn costs
    one copy instead of one per append. ``start`` is the timeline offset of the oldest
    sample held; ``end`` is the timeline length (every sample ever appended).
    """

    def __init__(self) -> None:
        self._chunks: list[Pcm] = []
        self._held = 0
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + self._held

    @property
    def ms(self) -> float:
        return self._held * 1000 / ENGINE_RATE

    def append(self, pcm: Pcm) -> None:
        if len(pcm):
            self._chunks.append(pcm)
            self._held += len(pcm)

    def take(self, begin: int, end: int) -> Pcm:
        """Audio from ``begin`` to ``end`` (clamped to what is held); everything before
        ``end`` is dropped, the rest stays for the next turn."""
        audio = self._joined()
        cut = min(max(end - self.start, 0), len(audio))
        taken = audio[max(begin - self.start, 0) : cut].copy()
        self._chunks = [audio[cut:]] if cut < len(audio) else []
        self._held -= cut
        self.start += cut
        return taken

    def take_all(self) -> Pcm:
        return self.take(self.start, self.end)

    def keep_last(self, samples: int) -> None:
        """Drop all but the newest ``samples`` (idle audio that can no longer join a turn)."""
        excess = self._held - samples
        if excess <= 0:
            return
        while self._chunks and len(self._chunks[0]) <= excess:
            dropped = self._chunks.pop(0)
            excess -= len(dropped)
            self._held -= len(dropped)
            self.start += len(dropped)
        if excess > 0:
            self._chunks[0] = self._chunks[0][excess:]
            self._held -= excess
            self.start += excess

    def clear(self) -> None:
        self.take_all()

    def _joined(self) -> Pcm:
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else empty_pcm()]
        return self._chunks[0]
