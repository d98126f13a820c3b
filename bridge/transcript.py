"""The call transcript, emitted in conversation order.

Caller transcriptions arrive asynchronously, often after the agent's reply has begun; agent
lines are final only once their audio has played out (or been interrupted), so that
`played_ms` is true. Entries are held in conversation order and released from the head as
they become final. A caller line whose transcription never comes is released after
`caller_wait_s` so one lost event cannot hold the rest of the call's transcript back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["caller", "agent"]


@dataclass(slots=True)
class Entry:
    item_id: str
    role: Role
    created_at: float
    text: str | None = None
    final: bool = False
    interrupted: bool = False
    played_ms: int = 0
    failed: bool = False

    def line(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "role": self.role,
            "text": self.text or "",
            "item_id": self.item_id,
        }
        if self.role == "agent":
            fields["interrupted"] = self.interrupted
            fields["played_ms"] = self.played_ms
        elif self.failed or self.text is None:
            fields["transcription_failed"] = True
        return fields


@dataclass(slots=True)
class Transcript:
    caller_wait_s: float = 10.0
    _queue: deque[Entry] = field(default_factory=deque)
    _by_id: dict[str, Entry] = field(default_factory=dict)
    _emitted: set[str] = field(default_factory=set)

    def add(self, item_id: str, role: Role, now: float) -> Entry:
        """Register an item at its place in the conversation (idempotent)."""
        entry = self._by_id.get(item_id)
        if entry is None:
            entry = Entry(item_id, role, now)
            self._by_id[item_id] = entry
            self._queue.append(entry)
        return entry

    def get(self, item_id: str) -> Entry | None:
        return self._by_id.get(item_id)

    def caller_text(
        self, item_id: str, text: str, now: float, failed: bool = False
    ) -> list[dict[str, Any]]:
        """A caller transcription arrived (or failed). Returns the lines now ready."""
        if item_id in self._emitted:
            # Released earlier without text: say it late rather than lose it.
            return [{"role": "caller", "text": text, "item_id": item_id, "late": True}]
        entry = self.add(item_id, "caller", now)
        entry.text = text
        entry.failed = failed
        entry.final = True
        return self.ready(now)

    def agent_text(self, item_id: str, text: str) -> None:
        entry = self._by_id.get(item_id)
        if entry is not None and not entry.final:
            entry.text = text

    def agent_delta(self, item_id: str, delta: str) -> None:
        """More words of an agent item, as generated (its `done` replaces them all)."""
        entry = self._by_id.get(item_id)
        if entry is not None and not entry.final:
            entry.text = (entry.text or "") + delta

    def agent_final(
        self,
        item_id: str,
        played_ms: int,
        interrupted: bool,
        now: float,
        heard: Callable[[str], str] | None = None,
    ) -> list[dict[str, Any]]:
        """The agent item finished playing or was interrupted. `heard` cuts its text to what
        the caller heard of it (an interrupted line, a hang-up mid-sentence). Returns the lines
        now ready."""
        entry = self._by_id.get(item_id)
        if entry is None or entry.final:
            return []
        if heard is not None and entry.text:
            entry.text = heard(entry.text)
        entry.played_ms = played_ms
        entry.interrupted = interrupted
        entry.final = True
        return self.ready(now)

    def ready(self, now: float) -> list[dict[str, Any]]:
        lines = []
        while self._queue:
            head = self._queue[0]
            if not head.final:
                waited_out = head.role == "caller" and now - head.created_at >= self.caller_wait_s
                later_final = any(e.final for e in self._queue)
                if not (waited_out and later_final):
                    break
            self._queue.popleft()
            self._by_id.pop(head.item_id, None)
            self._emitted.add(head.item_id)
            lines.append(head.line())
        return lines

    def pending(self) -> list[Entry]:
        """Entries not yet released, in conversation order."""
        return list(self._queue)

    def drain(self) -> list[dict[str, Any]]:
        """End of call: release everything, final or not, in order."""
        lines = [e.line() for e in self._queue]
        self._emitted.update(e.item_id for e in self._queue)
        self._queue.clear()
        self._by_id.clear()
        return lines
