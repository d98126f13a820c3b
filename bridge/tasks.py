"""A set of background tasks that are never lost: kept until done, failures reported, all
cancelled and awaited together at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class TaskSet:
    """Tasks started beside something that owns them (a call, a server). A task that fails
    is reported through `on_error(task_name, exc)` instead of being left to the loop's
    "exception was never retrieved"."""

    def __init__(self, on_error: Callable[[str, BaseException], None] | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_error = on_error

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or self._on_error is None:
            return
        exc = task.exception()
        if exc is not None:
            self._on_error(task.get_name(), exc)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(set(self._tasks))

    async def wait(self, timeout_s: float) -> None:
        """Let the tasks finish on their own, up to `timeout_s`."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait until all have ended."""
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
