"""Runs a call's tools beside the audio: the pumps hand work over and never wait for it.

The adapter (`stream.py`) creates one `ToolRunner` per call and forwards three things to it:
function calls from the model, DTMF digits from the caller, and the moment the agent's audio
has finished playing (so call-control actions can let the last words play out).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.call import Call
from bridge.logs import get_logger
from bridge.realtime.events import FunctionCall

log = get_logger("voicebridge.tools")


class ToolRunner:
    """One call's tool tasks. `flush` sends what the `Call` queued upstream; `end` ends the
    call with a reason (the adapter closes both sockets)."""

    def __init__(
        self,
        call: Call,
        *,
        flush: Callable[[], Awaitable[None]],
        end: Callable[[str], None],
        context: Any = None,
    ) -> None:
        self.call = call
        self._flush = flush
        self._end = end
        self.context = context
        self.tasks: set[asyncio.Task[Any]] = set()

    def start(self, function_call: FunctionCall) -> None:
        """Run a function call as a task; its result goes back through `Call.tool_result`."""
        task = asyncio.create_task(self._run(function_call), name=f"tool:{function_call.name}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, function_call: FunctionCall) -> None:
        started = time.perf_counter()
        output = '{"error": "tool not available"}'
        log.info(
            "tool_call",
            name=function_call.name,
            arguments=function_call.arguments,
            ok=False,
            duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
        )
        self.call.tool_result(
            function_call.response_id, function_call.call_id, output, time.monotonic()
        )
        await self._flush()

    def dtmf(self, digit: str) -> None:
        """A keypad digit from the caller."""
        log.info("dtmf", digit=digit)

    def playback_idle(self) -> None:
        """Everything the agent said has played out and no response is under way."""

    async def aclose(self) -> None:
        """The call is over: cancel what still runs; late results are dropped."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
