"""Twilio's outbound playback buffer as a sans-I/O model with an explicit clock.

Twilio queues the audio a Media Stream server sends and plays it in order at real time;
a `mark` is echoed when the audio sent before it has finished playing, and `clear` drops
what has not been played and echoes every pending mark at once. Barge-in accuracy is
measured against this model, so it works on absolute times passed in by the caller and
never sleeps: a chunk starts when the previous one ends, or when it arrives if the player
is idle, so scheduling jitter in the event loop cannot shift what the caller "heard".
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from bridge.sim.audio import BYTES_PER_MS, SAMPLE_RATE

_EPSILON = 1e-9
"""Guards float comparisons of times computed as start + bytes / 8000."""


@dataclass(frozen=True)
class PlayedChunk:
    """One outbound `media` payload on the caller's loudspeaker timeline.

    `index` counts the server's `media` messages from 0 (dropped ones included), so a test
    can map a chunk back to what the bridge sent. `start`/`end` are clock times; `payload`
    is what plays, already shortened if a clear or hang-up `cut` it mid-way.
    """

    index: int
    received_at: float
    start: float
    end: float
    payload: bytes
    cut: bool = False

    @property
    def duration_ms(self) -> float:
        """Length of the (possibly cut) payload: 8 bytes per millisecond."""
        return len(self.payload) / BYTES_PER_MS

    def played_bytes(self, now: float) -> int:
        """How many bytes of the payload the caller has heard by `now`."""
        if now >= self.end - _EPSILON:
            return len(self.payload)
        if now <= self.start:
            return 0
        return min(len(self.payload), int((now - self.start) * SAMPLE_RATE + _EPSILON))


@dataclass(frozen=True)
class MarkEcho:
    """A `mark` Twilio returned: at `time` its audio had finished playing, or was cleared.

    `time` is the model's playback time (end of the preceding audio, or the clear);
    `sent_at` is when the echo was actually written to the socket (None inside the model).
    """

    name: str
    time: float
    cleared: bool
    sent_at: float | None = None


@dataclass(frozen=True)
class ClearRecord:
    """A `clear` from the server and what it did to the caller's audio."""

    index: int
    time: float
    played_ms_total: float
    """Milliseconds of outbound audio played since the stream began, at the instant of the
    clear, counting the interrupted chunk up to the clear."""
    dropped_ms: float
    """Buffered audio the caller will never hear because of this clear."""
    marks_cleared: tuple[str, ...]


@dataclass
class _PendingMark:
    name: str
    due: float


class PlaybackBuffer:
    """Twilio's playback queue for one stream, driven by explicit clock readings.

    Call `push_media`, `push_mark` and `clear` as messages arrive, `advance` whenever the
    clock moves to collect marks that came due, and `finish` when the call ends.
    """

    def __init__(self) -> None:
        self._chunks: list[PlayedChunk] = []  # scheduled, in order; none dropped
        self._marks: deque[_PendingMark] = deque()
        self._free_at = float("-inf")  # when the loudspeaker runs out of queued audio
        self._media_count = 0
        self._ended_at: float | None = None
        self.dropped: list[PlayedChunk] = []
        """Chunks discarded unplayed by a clear or by the end of the call."""
        self.clears: list[ClearRecord] = []

    @property
    def ended(self) -> bool:
        """True once the call ended; later audio and marks are ignored."""
        return self._ended_at is not None

    def push_media(self, payload: bytes, now: float) -> PlayedChunk | None:
        """Queue a payload received at `now` and return its place on the timeline."""
        index = self._media_count
        self._media_count += 1
        if self.ended:
            return None
        start = max(now, self._free_at)
        chunk = PlayedChunk(index, now, start, start + len(payload) / SAMPLE_RATE, payload)
        self._chunks.append(chunk)
        self._free_at = chunk.end
        return chunk

    def push_mark(self, name: str, now: float) -> float | None:
        """Queue a mark behind the audio already sent; return when it will come due."""
        if self.ended:
            return None
        due = max(now, self._free_at)
        self._marks.append(_PendingMark(name, due))
        return due

    def next_due(self) -> float | None:
        """When the oldest pending mark comes due, or None if there is none."""
        return self._marks[0].due if self._marks else None

    def advance(self, now: float) -> list[MarkEcho]:
        """Marks whose preceding audio has finished playing by `now`, in order."""
        echoes = []
        while self._marks and self._marks[0].due <= now + _EPSILON:
            mark = self._marks.popleft()
            echoes.append(MarkEcho(mark.name, mark.due, cleared=False))
        return echoes

    def clear(self, now: float) -> list[MarkEcho]:
        """Apply a `clear` at `now`: echoes owed for played audio first, then cleared ones."""
        echoes = self.advance(now)
        if self.ended:
            return echoes
        dropped_ms = self._cut(now)
        cleared = [MarkEcho(mark.name, now, cleared=True) for mark in self._marks]
        self._marks.clear()
        self.clears.append(
            ClearRecord(
                index=len(self.clears),
                time=now,
                played_ms_total=self.played_ms(now),
                dropped_ms=dropped_ms,
                marks_cleared=tuple(mark.name for mark in cleared),
            )
        )
        return echoes + cleared

    def finish(self, now: float) -> None:
        """The call ended at `now`: playback stops and pending marks are never echoed."""
        if self.ended:
            return
        self._cut(now)
        self._marks.clear()
        self._ended_at = now

    def buffered_ms(self, now: float) -> float:
        """Audio received but not yet played at `now`."""
        return sum(
            (len(c.payload) - c.played_bytes(now)) / BYTES_PER_MS
            for c in self._chunks
            if c.end > now
        )

    @property
    def idle_at(self) -> float:
        """When everything queued so far will have played (-inf if nothing ever was)."""
        return self._free_at

    def played(self, now: float) -> list[PlayedChunk]:
        """Chunks that had started playing by `now`; the last one may still be playing."""
        return [c for c in self._chunks if c.start <= now and c.payload]

    def heard_audio(self, now: float) -> bytes:
        """The μ-law the caller heard up to `now`, a chunk in progress only in part."""
        return b"".join(c.payload[: c.played_bytes(now)] for c in self.played(now))

    def played_ms(self, now: float) -> float:
        """Milliseconds of audio played up to `now`, partial chunks by elapsed time."""
        return sum(c.played_bytes(now) for c in self.played(now)) / BYTES_PER_MS

    def _cut(self, now: float) -> float:
        """Stop the loudspeaker at `now`; return the milliseconds of audio thrown away."""
        kept: list[PlayedChunk] = []
        dropped_bytes = 0
        for chunk in self._chunks:
            if chunk.end <= now + _EPSILON:
                kept.append(chunk)
            elif chunk.start < now:
                heard = chunk.played_bytes(now)
                dropped_bytes += len(chunk.payload) - heard
                kept.append(
                    replace(
                        chunk,
                        payload=chunk.payload[:heard],
                        end=chunk.start + heard / SAMPLE_RATE,
                        cut=True,
                    )
                )
                self.dropped.append(
                    replace(
                        chunk,
                        payload=chunk.payload[heard:],
                        start=chunk.start + heard / SAMPLE_RATE,
                        cut=True,
                    )
                )
            else:
                dropped_bytes += len(chunk.payload)
                self.dropped.append(chunk)
        self._chunks = kept
        self._free_at = now
        return dropped_bytes / BYTES_PER_MS
