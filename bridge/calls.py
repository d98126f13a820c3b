"""The live calls of one process: how many, which CallSids, whether new ones are accepted.

The webhook asks `accepting` before it hands out a stream; the media stream asks `admit`
when its `start` arrives, so the cap holds even for streams whose webhook was answered long
before (or never, in local mode), and a CallSid has one stream at a time. The drain (SIGTERM)
and shutdown work through it too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from bridge import metrics
from bridge.errors import describe
from bridge.logs import get_logger
from bridge.tasks import TaskSet

log = get_logger("voicebridge.calls")


class LiveCall(Protocol):
    def end(self, reason: str) -> None: ...


MIN_PENDING_STREAMS = 64
"""Streams past their handshake still waiting for `start` (nobody is authenticated before
it): at most the call cap, and never fewer than this, so a burst of real calls fits."""


class CallRegistry:
    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self.max_pending = max(MIN_PENDING_STREAMS, max_calls)
        self.pending = 0
        self.draining = False
        self.idle = asyncio.Event()  # set while no call is live (the drain waits on it)
        self.idle.set()
        self._sids: set[str] = set()
        self.runtimes: set[Any] = set()  # the live calls' adapters, for shutdown and tests
        self.streams = TaskSet(on_error=_stream_failed)  # one per media-stream connection

    @property
    def active_calls(self) -> int:
        return len(self._sids)

    @property
    def accepting(self) -> bool:
        return not self.draining and self.active_calls < self.max_calls

    def admit(self, call_sid: str) -> str | None:
        """Take a call that has started streaming, or say why not (it is then refused)."""
        if call_sid in self._sids:
            return "a stream for this call is already live"
        if self.draining:
            return "draining"
        if self.active_calls >= self.max_calls:
            return "at capacity"
        self._sids.add(call_sid)
        self.idle.clear()
        metrics.ACTIVE_CALLS.set(self.active_calls)
        return None

    def live_sids(self) -> list[str]:
        """The CallSids of the live calls (their leases in the shared store are renewed)."""
        return list(self._sids)

    def await_start(self) -> bool:
        """A stream's handshake is done and its `start` is awaited: False when too many
        already wait (it is refused at once rather than held)."""
        if self.pending >= self.max_pending:
            return False
        self.pending += 1
        return True

    def started(self) -> None:
        """The stream awaited by `await_start` sent `start`, or is gone."""
        self.pending -= 1

    def release(self, call_sid: str) -> None:
        self._sids.discard(call_sid)
        if not self._sids:
            self.idle.set()
        metrics.ACTIVE_CALLS.set(self.active_calls)

    def answered_by(self, call_sid: str, kind: str) -> bool:
        """Twilio's answering-machine detection for a live call this process placed: its core
        decides the opening (`Call.answered_by`). False when no stream of it is live here."""
        for runtime in self.runtimes:
            if runtime.call.call_sid == call_sid:
                runtime.call.answered_by(kind, time.monotonic())
                runtime.drain()
                return True
        return False

    def serve(self, coro: Coroutine[Any, Any, None]) -> None:
        """A media-stream socket completed its handshake: serve it in its own task."""
        self.streams.spawn(coro, "media-stream")

    async def drain(self, timeout_s: float) -> int:
        """Stop accepting calls and wait for the live ones to end (up to `timeout_s`);
        returns how many are still live."""
        self.draining = True
        try:
            await asyncio.wait_for(self.idle.wait(), timeout_s)
        except TimeoutError:
            pass
        return self.active_calls

    async def close_all(self, timeout_s: float = 5.0) -> None:
        """Server shutdown: end the calls still live (after the drain), then their tasks."""
        for runtime in list(self.runtimes):
            runtime.end("shutdown")
        await self.streams.wait(timeout_s)
        await self.streams.cancel_all()


def _stream_failed(name: str, exc: BaseException) -> None:
    log.error("stream_failed", error=describe(exc))
