"""The playback clock: what the caller has really heard of each assistant item.

Every 20 ms frame sent to Twilio is followed by a mark. Twilio echoes a mark when the audio
before it has finished playing, and echoes *every* pending mark at once when it gets `clear`.
So: a mark echoed while it is pending means "played up to here"; once we send `clear`, the
pending marks are forgotten and their late echoes are ignored (they mean "cleared"). Mark
names come from one counter and are never reused, which is the clear epoch in its simplest
form. No I/O and no clock of its own: callers pass `now` (seconds, monotonic).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

FRAME_MS = 20


@dataclass(slots=True)
class ItemPlayback:
    """One assistant audio item as the caller experiences it."""

    item_id: str
    response_id: str
    audio_ms: float = 0.0  # audio received from upstream for this item
    sent_ms: int = 0  # framed and sent to Twilio
    played_ms: int = 0  # confirmed played by echoed marks
    audio_done: bool = False  # the upstream said this item's audio is complete
    interrupted: bool = False
    heard_ms: int | None = None  # fixed at barge-in: what the caller had heard


# A pending mark: (name, item, end_ms, sent_at). A tuple, not an object: one is made for
# every 20 ms frame of every call, and a tuple is built by one bytecode.
_NAME, _ITEM, _END_MS, _SENT_AT = 0, 1, 2, 3
_PendingMark = tuple[str, ItemPlayback, int, float]


@dataclass(slots=True)
class PlaybackClock:
    """Pending marks in send order, and the items they belong to."""

    _pending: deque[_PendingMark] = field(default_factory=deque)
    _by_name: dict[str, _PendingMark] = field(default_factory=dict)
    _seq: int = 0
    _last_echo_at: float = 0.0
    clears: int = 0
    _prefix: str = field(default="", init=False)  # "<clears>.", kept with `clears`

    def __post_init__(self) -> None:
        self._prefix = f"{self.clears}."

    def frame_sent(self, item: ItemPlayback, now: float) -> str:
        """Account one 20 ms frame of `item` as sent; returns the mark name to send after it."""
        seq = self._seq = self._seq + 1
        name = self._prefix + str(seq)
        end_ms = item.sent_ms = item.sent_ms + FRAME_MS
        mark = (name, item, end_ms, now)
        self._pending.append(mark)
        self._by_name[name] = mark
        return name

    def mark_echoed(self, name: str, now: float) -> ItemPlayback | None:
        """Twilio echoed `name`. Returns the item whose played time advanced, or None when the
        echo is stale (cleared) or unknown."""
        mark = self._by_name.pop(name, None)
        if mark is None:
            return None
        # Echoes come in order; anything still ahead of this one was played as well. A mark
        # in `_by_name` is in `_pending` (both are filled and emptied together).
        pending = self._pending
        while True:
            head = pending.popleft()
            _, item, end_ms, _ = head
            if end_ms > item.played_ms:
                item.played_ms = end_ms
            if head is mark:
                break
            self._by_name.pop(head[_NAME], None)
        self._last_echo_at = now
        return item

    @property
    def playing(self) -> bool:
        """True while the caller still has assistant audio in their ear (frames unconfirmed)."""
        return bool(self._pending)

    def pending_items(self) -> list[ItemPlayback]:
        """Items with unconfirmed frames, in play order (the first is the one being heard)."""
        items: list[ItemPlayback] = []
        for mark in self._pending:
            item = mark[_ITEM]
            if not items or items[-1] is not item:
                items.append(item)
        return items

    def heard_ms(self, item: ItemPlayback, now: float) -> int:
        """What the caller has heard of `item` at `now`.

        Confirmed marks give a lower bound at 20 ms resolution; the frame playing now has
        been playing since the later of the last echo and its own sending, so add that much,
        capped at one frame. The error is thus bounded by one frame even if the clock lies.
        """
        heard = item.played_ms
        if self._pending and self._pending[0][_ITEM] is item:
            head = self._pending[0]
            start = head[_END_MS] - FRAME_MS
            elapsed_ms = (now - max(self._last_echo_at, head[_SENT_AT])) * 1000.0
            heard = max(heard, start + round(min(max(elapsed_ms, 0.0), FRAME_MS)))
        return min(heard, int(item.audio_ms))

    def item_finished(self, item: ItemPlayback) -> bool:
        """All of the item's audio has arrived, been sent and been confirmed played."""
        return item.audio_done and not any(m[_ITEM] is item for m in self._pending)

    def clear(self) -> None:
        """We sent Twilio `clear`: forget pending marks so their echoes are not taken as played."""
        self._pending.clear()
        self._by_name.clear()
        self.clears += 1
        self._prefix = f"{self.clears}."
