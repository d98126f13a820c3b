"""The ToolRunner: one function call run with its tool, bounded and described, beside the
audio. What the result then means (answering the model, a handoff) is the call core's."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.persona import Persona
from bridge.tools.base import Tool, ToolEnv, ToolResult
from bridge.tools.runner import ToolRunner, parse_arguments
from tests.conftest import make_settings

CALL_SID = "CA" + "1" * 32


def tool(name: str, run: Any, *, timeout_s: float = 5.0, filler: str | None = None) -> Tool:
    return Tool(name, "a test tool", {"type": "object", "properties": {}}, run, timeout_s, filler)


def runner(*tools: Tool, filler_after_s: float = 1.0) -> ToolRunner:
    env = ToolEnv(
        Persona(name="desk", instructions="Answer.", greeting="Hi."), make_settings(), CALL_SID
    )
    return ToolRunner({t.name: t for t in tools}, env, filler_after_s=filler_after_s)


async def test_a_slow_tool_reports_its_filler_once_after_the_delay() -> None:
    async def slow(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        await asyncio.sleep(0.2)
        return ToolResult("done")

    slow_calls: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    r = runner(tool("slow", slow, filler="Just a moment."), filler_after_s=0.05)
    result = await r.run("slow", {}, None, lambda line: slow_calls.append((line, loop.time())))
    assert result.output == "done"
    assert [line for line, _ in slow_calls] == ["Just a moment."]
    assert 0.04 <= slow_calls[0][1] - started < 0.15


async def test_a_quick_tool_or_one_without_filler_reports_nothing() -> None:
    async def quick(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        return ToolResult("fast")

    async def silent(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        await asyncio.sleep(0.1)
        return ToolResult("late")

    slow: list[str] = []
    r = runner(tool("quick", quick, filler="Hm."), tool("silent", silent), filler_after_s=0.02)
    assert (await r.run("quick", {}, None, slow.append)).output == "fast"
    assert (await r.run("silent", {}, None, slow.append)).output == "late"
    assert slow == []


async def test_errors_become_results_the_model_can_talk_about() -> None:
    async def broken(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        raise RuntimeError("disk on fire")

    async def hangs(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    r = runner(tool("broken", broken), tool("hangs", hangs, timeout_s=0.1))
    loop = asyncio.get_running_loop()
    started = loop.time()
    timed_out = await r.run("hangs", {}, None, lambda _: None)
    assert 0.1 <= loop.time() - started < 1.0
    args, problem = parse_arguments("{not json")
    results = [
        await r.run("broken", {}, None, lambda _: None),
        timed_out,
        await r.run("nonexistent", {}, None, lambda _: None),
        await r.run("broken", args, problem, lambda _: None),
    ]
    assert [x.ok for x in results] == [False] * 4
    assert [x.error for x in results][:3] == [
        "broken failed: RuntimeError: disk on fire",
        "hangs timed out after 0.1 s",
        "unknown tool 'nonexistent'",
    ]
    assert (results[3].error or "").startswith("arguments are not valid JSON")


def test_arguments_are_a_json_object_or_nothing() -> None:
    assert parse_arguments("") == ({}, None)
    assert parse_arguments('{"q": "x"}') == ({"q": "x"}, None)
    assert parse_arguments("[1]") == (None, "arguments must be a JSON object")


async def test_cancelling_a_run_cancels_the_tool() -> None:
    cancelled = asyncio.Event()

    async def waits(args: dict[str, Any], env: ToolEnv) -> ToolResult:
        try:
            await asyncio.sleep(10)
        finally:
            cancelled.set()
        return ToolResult("never")

    r = runner(tool("waits", waits))
    task = asyncio.ensure_future(r.run("waits", {}, None, lambda _: None))
    await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert cancelled.is_set()
