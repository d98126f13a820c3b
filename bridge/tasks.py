"""The background tasks of one owner (a call, a session, the server's streams), as one set.

asyncio keeps only a weak reference to a task, so whoever starts one must hold it until it
ends, notice if it crashed (or the exception is only reported when the task is garbage
collected, if ever), and cancel and await what still runs when the owner closes. `TaskSet`
does those three things once, for every owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["OnError", "TaskSet"]

T = TypeVar("T")

OnError = Callable[[str, BaseException], None]
"""Called, in the event loop, with the name of a task that raised and its exception."""


class TaskSet:
    """Holds tasks until they end; a task that raised is reported to `on_error`, which the
    owner gives because only it knows what a crash means (log it, end the call, close the
    connection). A cancelled task is not a failure.

    `on_error` runs as the task's done-callback, so it must not block; it may spawn into this
    set (e.g. a task that closes the connection).
    """

    __slots__ = ("_on_error", "_tasks")

    def __init__(self, on_error: OnError) -> None:
        self._on_error = on_error
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Run `coro` as a task named `name`, held by this set until it ends."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so asyncio never logs it as lost
        if exc is not None:
            self._on_error(task.get_name(), exc)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        """The tasks running now (a copy: spawning while iterating is fine)."""
        return iter(set(self._tasks))

    async def wait(self, timeout_s: float) -> None:
        """Let the tasks finish on their own, for up to `timeout_s` (a drain's grace)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def cancel_all(self) -> None:
        """Cancel every task and wait until all have ended.

        Tasks spawned meanwhile (by `on_error`, or by a task being cancelled) are cancelled
        and awaited too, so the set is empty when this returns; the task calling this, if it
        is one of the set, is left to finish.
        """
        current = asyncio.current_task()
        while pending := [task for task in self._tasks if task is not current]:
            for task in pending:
                task.cancel()
            # A task's own done-callback (`_done`) was added first, so it has run, and the
            # task has left the set, by the time gather returns.
            await asyncio.gather(*pending, return_exceptions=True)
