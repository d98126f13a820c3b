"""A business's receiver of call events on loopback, which can be made flaky.

It answers ``POST`` on any path. ``answers`` is what it does on the 1st, 2nd, … delivery of
each event id (``200``, ``503``, ``429``, ``timeout``: hold the answer ``hold_s``, past the
sender's timeout, then 200 to a client long gone); beyond the list, ``200``. ``retry_after``
is sent with every non-2xx answer when set. Every request is recorded as it arrived, its
event stored once per id (as a receiver that drops duplicates by ``id`` does).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

from tests.fakes._http import ThreadedHttpFake, read_body


@dataclass(frozen=True)
class EventRequest:
    time: float
    path: str
    headers: dict[str, str]
    body: bytes
    answer: str

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class FakeEventReceiver(ThreadedHttpFake):
    answers: list[str] = field(default_factory=list)
    hold_s: float = 1.0
    retry_after: str | None = None
    _thread_name: ClassVar[str] = "fake-events"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.requests: list[EventRequest] = []
        self.events: dict[str, dict[str, Any]] = {}  # id → event, the first copy only
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        body = read_body(handler)
        try:
            event_id = str(json.loads(body)["id"])
        except (ValueError, KeyError, TypeError):
            event_id = ""
        with self._lock:
            n = self._seen.get(event_id, 0)
            self._seen[event_id] = n + 1
            answer = self.answers[n] if n < len(self.answers) else "200"
            self.requests.append(
                EventRequest(arrived, handler.path, dict(handler.headers), body, answer)
            )
            if answer in ("200", "timeout") and event_id not in self.events:
                self.events[event_id] = json.loads(body)
        if answer == "timeout":
            self._released.wait(self.hold_s)
            answer = "200"
        status = int(answer)
        handler.send_response(status)
        if status >= 300 and self.retry_after is not None:
            handler.send_header("Retry-After", self.retry_after)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events.values() if e["type"] == event_type]

    async def wait_for(self, event_type: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.of_type(event_type)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {count} {event_type} events")
            await asyncio.sleep(0.01)
        return self.of_type(event_type)
