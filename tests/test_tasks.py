"""`TaskSet`: tasks held until they end, crashes reported once, and nothing left on close."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from bridge.tasks import TaskSet


class Failures:
    def __init__(self) -> None:
        self.seen: list[tuple[str, BaseException]] = []

    def __call__(self, name: str, exc: BaseException) -> None:
        self.seen.append((name, exc))


async def test_a_task_is_held_until_it_ends_and_gives_its_result() -> None:
    failures = Failures()
    tasks = TaskSet(failures)
    release = asyncio.Event()

    async def work() -> int:
        await release.wait()
        return 7

    task = tasks.spawn(work(), "work")
    assert (len(tasks), task.get_name()) == (1, "work")
    release.set()
    assert await task == 7
    await asyncio.sleep(0)  # the done-callback runs one step later
    assert (len(tasks), failures.seen) == (0, [])


async def test_a_crash_is_reported_once_and_never_as_an_unretrieved_exception() -> None:
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    failures = Failures()
    tasks = TaskSet(failures)
    boom = RuntimeError("boom")

    async def crash() -> None:
        raise boom

    tasks.spawn(crash(), "crash")
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()  # an unretrieved exception would be reported here, by the task's __del__
    loop.set_exception_handler(None)
    assert failures.seen == [("crash", boom)]
    assert (len(tasks), unhandled) == (0, [])


async def test_a_cancelled_task_is_not_a_failure() -> None:
    failures = Failures()
    tasks = TaskSet(failures)
    task = tasks.spawn(asyncio.sleep(3600), "sleeper")
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert (len(tasks), failures.seen) == (0, [])


async def test_cancel_all_cancels_and_awaits_every_task() -> None:
    tasks = TaskSet(Failures())
    cleaned: list[int] = []

    async def held(n: int) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append(n)

    spawned = [tasks.spawn(held(n), f"held:{n}") for n in range(5)]
    await asyncio.sleep(0)
    assert sorted(task.get_name() for task in tasks) == [f"held:{n}" for n in range(5)]
    await tasks.cancel_all()
    assert sorted(cleaned) == [0, 1, 2, 3, 4]
    assert all(task.cancelled() for task in spawned)
    assert len(tasks) == 0


async def test_wait_lets_a_task_finish_within_the_grace_and_cancel_all_ends_the_rest() -> None:
    tasks = TaskSet(Failures())
    release = asyncio.Event()

    async def finishing() -> str:
        await release.wait()
        return "done"

    quick = tasks.spawn(finishing(), "quick")
    stuck = tasks.spawn(asyncio.sleep(3600), "stuck")
    asyncio.get_running_loop().call_soon(release.set)
    await tasks.wait(0.2)
    assert (quick.result(), stuck.done(), len(tasks)) == ("done", False, 1)
    await tasks.cancel_all()
    assert (quick.cancelled(), quick.result()) == (False, "done")
    assert stuck.cancelled()
    assert len(tasks) == 0


async def test_a_task_spawned_by_the_failure_callback_during_close_is_awaited_too() -> None:
    closers: list[asyncio.Task[None]] = []
    tasks: TaskSet

    def on_failure(name: str, exc: BaseException) -> None:
        closers.append(tasks.spawn(asyncio.sleep(3600), "close-connection"))

    tasks = TaskSet(on_failure)

    async def crash_when_cancelled() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    tasks.spawn(crash_when_cancelled(), "crash-when-cancelled")
    await asyncio.sleep(0)
    await tasks.cancel_all()
    assert [closer.cancelled() for closer in closers] == [True]
    assert len(tasks) == 0


async def test_cancel_all_from_a_task_of_the_set_does_not_cancel_its_caller() -> None:
    tasks = TaskSet(Failures())
    other = tasks.spawn(asyncio.sleep(3600), "other")

    async def closing() -> str:
        await tasks.cancel_all()
        return "closed the others"

    closer = tasks.spawn(closing(), "closer")
    assert await closer == "closed the others"
    assert other.cancelled()
