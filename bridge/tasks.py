"""The background tasks of one owner (a call, a session, the server's streams), as one set.

asyncio keeps only a weak reference to a task, so whoever starts one must hold it until it
ends, notice if it crashed (or the exception is only reported when the task is garbage
collected, if ever), and cancel and await what still runs when the owner closes. `TaskSet`
does those three things once, for every owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["OnFailure", "TaskSet"]

T = TypeVar("T")

OnFailure = Callable[[asyncio.Task[Any], BaseException], None]
"""Called, in the event loop, with a task that raised and its exception."""


class TaskSet:
    """Holds tasks until they end; a task that raised is reported to `on_failure`.

    A cancelled task is not a failure. `on_failure` runs as the task's done-callback, so it
    must not block; it may spawn into this set (e.g. a task that closes the connection).
    """

    __slots__ = ("_on_failure", "_tasks")

    def __init__(self, on_failure: OnFailure) -> None:
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Run `coro` as a task held by this set until it ends."""
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
            self._on_failure(task, exc)

    def __len__(self) -> int:
        return len(self._tasks)

    def cancel_all(self) -> None:
        """Ask every task to stop, without waiting (for synchronous callers)."""
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self, grace_s: float = 0.0) -> None:
        """Let the tasks finish for up to `grace_s`, then cancel the rest and await them all.

        Tasks spawned meanwhile (by a failure callback, or by a task being cancelled) are
        cancelled and awaited too, so the set is empty when this returns; the task calling
        this, if it is one of the set, is left to finish.
        """
        current = asyncio.current_task()

        def others() -> list[asyncio.Task[Any]]:
            return [task for task in self._tasks if task is not current]

        if grace_s > 0 and (pending := others()):
            await asyncio.wait(pending, timeout=grace_s)
        while pending := others():
            for task in pending:
                task.cancel()
            # A task's own done-callback (`_done`) was added first, so it has run, and the
            # task has left the set, by the time gather returns.
            await asyncio.gather(*pending, return_exceptions=True)
