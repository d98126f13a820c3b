"""One absolute clock for many peers' periodic sends: a heap of due events and one timer.

The load generator (every caller's frames and mark echoes) and the fake upstream (every
session's deltas) both send on a 20 ms grid for hundreds of peers. A timer per event would
cost more than the sends themselves, so both keep their due events in one heap and wake at
most once per `MIN_WAKEUP_S`. `fire(due, item)` sends and returns the item's next due time,
or None when it has no more.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

# uvloop's timers fire up to 1 ms early anyway; waking more often only burns CPU.
MIN_WAKEUP_S = 0.001


class FrameClock:
    def __init__(self, fire: Callable[[float, Any], float | None]) -> None:
        self._fire = fire
        self._heap: list[tuple[float, int, Any]] = []
        self._tie = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")
        self._loop = asyncio.get_running_loop()
        self.wakeups = 0

    def push(self, due: float, item: Any) -> None:
        heapq.heappush(self._heap, (due, next(self._tie), item))
        if due < self._armed_for:
            self._arm()

    def take(self, match: Callable[[Any], bool]) -> list[tuple[float, Any]]:
        """Remove and return the pending events whose item matches (e.g. a caller's echoes
        that a `clear` makes due at once)."""
        taken = [(due, item) for due, _, item in self._heap if match(item)]
        if taken:
            self._heap = [entry for entry in self._heap if not match(entry[2])]
            heapq.heapify(self._heap)
        return taken

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        self.close()
        self._armed_for = float("inf")
        if self._heap:
            self._armed_for = self._heap[0][0]
            delay = self._armed_for - time.monotonic()
            self._timer = self._loop.call_later(max(delay, MIN_WAKEUP_S), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.wakeups += 1
        heap = self._heap
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            due, _, item = heapq.heappop(heap)
            following = self._fire(due, item)
            if following is not None:
                heapq.heappush(heap, (following, next(self._tie), item))
            now = time.monotonic()
        self._arm()
