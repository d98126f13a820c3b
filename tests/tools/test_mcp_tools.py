"""MCP servers as tool sources, end to end: a real MCP server (the `mcp` SDK's `MCPServer`
over streamable HTTP on a loopback port) is listed at start-up, its allow-listed tools are
offered to the fake "model", a call runs through it, and a server that stops or is down is
contained: an error output, or its tools left out with `mcp_server_unavailable`."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer

from bridge.persona import EndCallTool, Persona, TurnDetectionConfig
from bridge.sim import TwilioMediaStream, place_call
from bridge.sim.audio import speech_like
from tests.conftest import (
    TEST_SECRETS,
    LogCapture,
    free_port,
    make_settings,
    running_bridge,
    serving,
    wait_until,
)
from tests.fakes.realtime import FakeRealtimeServer, FunctionCall, Say
from tests.tools.helpers import ACCOUNT_SID, AUTH_TOKEN, OPENAI_KEY, function_outputs

CAL_TOKEN = "cal-token-test-0123456789"
TEST_SECRETS.add(CAL_TOKEN)
MAX_APPEND_GAP_S = 0.100


@pytest.fixture(autouse=True)
def _cal_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VB_TEST_CAL_TOKEN", CAL_TOKEN)
    monkeypatch.setattr("bridge.tools.catalogue.add_secrets", lambda _values: None)


def calendar_server(seen: list[dict[str, str]]) -> Any:
    """The MCP server's ASGI app, recording each request's headers in `seen`."""
    server = MCPServer("calendar")

    @server.tool()
    def find_slot(day: str) -> str:
        """Find a free appointment slot on a day."""
        return f"10:30 on {day}"

    @server.tool()
    def book_slot(day: str, time: str, name: str) -> dict[str, Any]:
        """Book an appointment slot."""
        return {"booked": True, "day": day, "time": time, "name": name}

    @server.tool()
    async def slow_lookup(day: str) -> str:
        """Look something up, slowly."""
        await asyncio.sleep(5)
        return "too late"

    @server.tool()
    def cancel_everything() -> str:
        """Not on the persona's allow-list."""
        return "cancelled"

    app = server.streamable_http_app()

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)

    return recording


@asynccontextmanager
async def mcp_server(seen: list[dict[str, str]]) -> AsyncIterator[tuple[uvicorn.Server, str]]:
    config = uvicorn.Config(calendar_server(seen), host="127.0.0.1", port=0, log_level="warning")
    async with serving(config) as (server, port):
        yield server, f"http://127.0.0.1:{port}/mcp"


def desk(
    url: str,
    create_response: bool = True,
    allowed: tuple[str, ...] = ("find_slot", "book_slot"),
    timeout_seconds: float = 3,
) -> Persona:
    return Persona.model_validate(
        {
            "name": "desk",
            "instructions": "Book appointments.",
            "greeting": "Hi.",
            "turn_detection": TurnDetectionConfig(create_response=create_response),
            "tools": {"end_call": EndCallTool()},
            "mcp_servers": {
                "calendar": {
                    "url": url,
                    "headers": {"Authorization": "Bearer ${VB_TEST_CAL_TOKEN}"},
                    "tools": list(allowed),
                    "timeout_seconds": timeout_seconds,
                }
            },
        }
    )


@asynccontextmanager
async def bridge_for(fake: FakeRealtimeServer, persona: Persona) -> AsyncIterator[Any]:
    port = free_port()
    settings = make_settings(
        OPENAI_API_KEY=OPENAI_KEY,
        REALTIME_URL=fake.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_BASE_URL="http://127.0.0.1:9",
    )
    async with running_bridge(settings, persona, port=port) as bridge:
        yield bridge


@asynccontextmanager
async def phone_call(bridge: Any, fake: FakeRealtimeServer) -> AsyncIterator[Any]:
    target = await place_call(bridge.base_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID)
    async with TwilioMediaStream(target, auth_token=AUTH_TOKEN) as stream:
        session = await fake.wait_for_session()
        await wait_until(lambda: bridge.calls.runtimes, 5, "the call to be set up")
        yield stream, session


async def test_an_mcp_servers_allowed_tools_are_offered_and_a_call_runs_through_it(
    logs: LogCapture,
) -> None:
    seen: list[dict[str, str]] = []
    booking = {"day": "Tuesday", "time": "10:30", "name": "Ana"}
    script = [[FunctionCall("book_slot", booking)], [Say("You are booked.", 200)]]
    async with mcp_server(seen) as (_, url), FakeRealtimeServer("ga", script) as fake:
        allowed = ("find_slot", "book_slot", "move_slot")  # the server has no move_slot
        async with bridge_for(fake, desk(url, allowed=allowed)) as bridge:
            (listed,) = logs.events("mcp_server_listed")
            (missing,) = [x for x in logs.events("tool_unavailable") if x["tool"] == "move_slot"]
            async with phone_call(bridge, fake) as (_, session):
                await session.wait_for_event("response.done", 5, nth=2)
                offered = [t["name"] for t in session.config.tools]
        assert fake.violations == []
    assert (listed["persona"], listed["server"]) == ("desk", "calendar")
    assert missing["reason"] == "MCP server calendar does not list it"
    assert sorted(listed["tools"]) == ["book_slot", "cancel_everything", "find_slot", "slow_lookup"]
    assert offered == ["end_call", "find_slot", "book_slot"]  # the allow-list, in listed order
    (tool,) = [t for t in session.config.tools if t["name"] == "book_slot"]
    assert tool["parameters"]["required"] == ["day", "time", "name"]
    assert tool["description"] == "Book an appointment slot."
    (output,) = function_outputs(session)
    assert json.loads(output["output"]) == {"booked": True, **booking}
    (line,) = logs.events("tool_call")
    assert (line["name"], line["arguments"], line["ok"]) == ("book_slot", booking, True)
    assert seen and all(h.get("authorization") == f"Bearer {CAL_TOKEN}" for h in seen)
    assert logs.events("mcp_server_unavailable") == []
    assert CAL_TOKEN not in "\n".join(logs.lines)


async def test_a_server_stopped_after_listing_gives_an_error_output_and_the_call_goes_on(
    logs: LogCapture,
) -> None:
    seen: list[dict[str, str]] = []
    script = [[Say("Hello", 200), FunctionCall("find_slot", {"day": "Tuesday"})], [Say("Sorry.")]]
    async with FakeRealtimeServer("ga", script) as fake, AsyncExitStack() as stack:
        _, url = await stack.enter_async_context(mcp_server(seen))
        async with bridge_for(fake, desk(url, create_response=False)) as bridge:
            await logs.wait_for("mcp_server_listed")
            await stack.aclose()  # the server goes away; the bridge's listing stays
            async with phone_call(bridge, fake) as (stream, session):
                stream.say(speech_like(1600))
                await session.wait_for_event(
                    "conversation.item.create",
                    6,
                    where=lambda e: e["item"]["type"] == "function_call_output",
                )
                await logs.wait_for("tool_call")
                await logs.wait_for("mcp_server_unavailable")  # the refresh the failure asked for
                await asyncio.wait_for(stream.wait_said(), 5)  # all 1.6 s of the caller's words
                assert bridge.calls.active_calls == 1
                assert bridge.services.tools.sources["desk"][0].listing is None
        assert fake.violations == []
    (output,) = function_outputs(session)
    error = json.loads(output["output"])
    assert error["ok"] is False
    assert error["error"].startswith("find_slot failed: MCP server calendar: ")
    (line,) = logs.events("tool_call")
    assert (line["name"], line["ok"]) == ("find_slot", False)
    (down,) = logs.events("mcp_server_unavailable")
    assert (down["persona"], down["server"]) == ("desk", "calendar") and down["error"]
    appends = [r.time for r in session.received if r.type == "input_audio_buffer.append"]
    gaps = [b - a for a, b in itertools.pairwise(appends)]
    print(f"\nappends: {len(appends)}, max gap {max(gaps) * 1000:.1f} ms")
    assert len(appends) >= 75 and max(gaps) < MAX_APPEND_GAP_S
    assert CAL_TOKEN not in "\n".join(logs.lines)


async def test_a_server_down_at_call_start_has_its_tools_left_out_and_the_log_says_why(
    logs: LogCapture,
) -> None:
    script = [[Say("Hello", 200)]]
    async with FakeRealtimeServer("ga", script) as fake:
        persona = desk(f"http://127.0.0.1:{free_port()}/mcp")  # nothing listens there
        async with bridge_for(fake, persona) as bridge:
            async with phone_call(bridge, fake) as (_, session):
                await session.wait_for_event("response.done", 5)
                offered = [t["name"] for t in session.config.tools]
                await logs.wait_for("mcp_server_unavailable", 2)
        assert fake.violations == []
    assert offered == ["end_call"]
    at_start, at_call = logs.events("mcp_server_unavailable")[:2]
    assert (at_start["persona"], at_start["server"]) == ("desk", "calendar")
    assert "call_sid" not in at_start and at_call["call_sid"]
    assert (at_call["server"], at_call["error"]) == ("calendar", at_start["error"])
    assert "ConnectError" in at_call["error"]
    assert logs.events("tool_call") == []


async def test_a_slow_mcp_tool_times_out_into_an_error_output(logs: LogCapture) -> None:
    seen: list[dict[str, str]] = []
    script = [[FunctionCall("slow_lookup", {"day": "Monday"})], [Say("That took too long.", 200)]]
    async with mcp_server(seen) as (_, url), FakeRealtimeServer("ga", script) as fake:
        persona = desk(url, allowed=("slow_lookup",), timeout_seconds=1)
        async with bridge_for(fake, persona) as bridge:
            async with phone_call(bridge, fake) as (_, session):
                await session.wait_for_event("response.done", 5, nth=2)
                assert bridge.calls.active_calls == 1
                offered = [t["name"] for t in session.config.tools]
        assert fake.violations == []
    assert offered == ["end_call", "slow_lookup"]
    (output,) = function_outputs(session)
    assert json.loads(output["output"]) == {
        "ok": False,
        "error": "slow_lookup timed out after 1 s",
    }
    (line,) = logs.events("tool_call")
    assert line["ok"] is False and 950 <= line["duration_ms"] < 2500
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("tool:")] == []


def test_a_tool_result_reads_as_structured_json_or_text_cut_at_16_kib() -> None:
    import mcp.types

    from bridge.tools.mcp_client import output_text

    text = mcp.types.TextContent(type="text", text="10:30 on Tuesday")
    image = mcp.types.ImageContent(type="image", data="AAAA", mime_type="image/png")
    assert output_text(mcp.types.CallToolResult(content=[text, image])) == (
        "10:30 on Tuesday\n[image content]"
    )
    structured = mcp.types.CallToolResult(content=[text], structured_content={"slot": "10:30"})
    assert output_text(structured) == '{"slot": "10:30"}'
    big = mcp.types.TextContent(type="text", text="é" * 10_000)  # 20,000 bytes of UTF-8
    out = output_text(mcp.types.CallToolResult(content=[big]))
    assert out == "é" * 8192 + "…[cut]" and len(out.removesuffix("…[cut]").encode()) == 16384
