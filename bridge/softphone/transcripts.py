"""Live transcript lines per call, for the softphone page.

The bridge logs every transcript line (`event: transcript`, interface.md) with the call's
`call_sid` bound. Rather than thread a second channel through the call code, the softphone
taps the log pipeline: a structlog processor copies `transcript` and `call_ended` lines of
calls someone is watching into per-call queues. The tap is re-installed whenever a page
subscribes, so a later `configure_logging` (tests reconfigure it) cannot silently remove it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

BACKLOG_LINES: Final = 200
"""Lines kept per watched call, so a page that subscribes late still sees the call so far."""

SUBSCRIBER_QUEUE_LINES: Final = 1000
"""Lines waiting for one page's event stream to take them."""

FORWARDED: Final = frozenset({"transcript", "call_ended", "call_started"})


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

    def processor(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """The structlog processor: copies watched calls' lines, passes everything on."""
        event = event_dict.get("event")
        call_sid = event_dict.get("call_sid")
        if event in FORWARDED and isinstance(call_sid, str):
            line = {k: v for k, v in event_dict.items() if k not in ("stream_sid",)}
            self.publish(call_sid, line)
        return event_dict

    def install(self) -> None:
        """Put the tap into structlog's chain just before the renderer: after the call's
        context is merged and after secrets are scrubbed, so the page sees what the log says."""
        processors = list(structlog.get_config()["processors"])
        if any(getattr(p, "__self__", None) is self for p in processors):
            return
        processors.insert(max(len(processors) - 1, 0), self.processor)
        structlog.configure(processors=processors)


FEED = TranscriptFeed()
"""The process's feed (one log pipeline per process)."""
