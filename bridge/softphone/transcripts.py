"""Live transcript lines per call, for the softphone page.

The call runtime publishes each call's `call_started`, `transcript` and `call_ended` lines
here as it logs them (the call core emits transcript lines as a typed effect for both); only
calls a page watches are kept, in per-call queues.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from typing import Any, Final

BACKLOG_LINES: Final = 200
"""Lines kept per watched call, so a page that subscribes late still sees the call so far."""

SUBSCRIBER_QUEUE_LINES: Final = 1000
"""Lines waiting for one page's event stream to take them."""


class TranscriptFeed:
    """Per-call fan-out of transcript log lines to subscribed pages."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._backlog: dict[str, deque[dict[str, Any]]] = {}

    @property
    def watched(self) -> int:
        """Calls whose lines are kept (each for as long as a page subscribes)."""
        return len(self._backlog)

    def watching(self, call_sid: str) -> bool:
        return call_sid in self._backlog

    def watch(self, call_sid: str) -> None:
        """Start keeping lines of `call_sid` (the page does this before it places the call)."""
        self._backlog.setdefault(call_sid, deque(maxlen=BACKLOG_LINES))

    def publish(self, call_sid: str, line: dict[str, Any]) -> None:
        backlog = self._backlog.get(call_sid)
        if backlog is None:
            return  # nobody watches this call (a real phone call): keep nothing
        backlog.append(line)
        for queue in self._subscribers.get(call_sid, ()):
            if not queue.full():  # a page that stopped reading loses lines, not our memory
                queue.put_nowait(line)

    def subscribe(self, call_sid: str) -> asyncio.Queue[dict[str, Any]]:
        """A queue of the call's lines, starting with those already logged."""
        self.watch(call_sid)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE_LINES)
        for line in self._backlog[call_sid]:
            queue.put_nowait(line)
        self._subscribers[call_sid].add(queue)
        return queue

    def unsubscribe(self, call_sid: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        subscribers = self._subscribers.get(call_sid)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[call_sid]
                self._backlog.pop(call_sid, None)


FEED = TranscriptFeed()
"""The process's feed (the softphone routes and the call runtime share it)."""
