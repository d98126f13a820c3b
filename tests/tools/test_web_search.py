"""web_search: what the model reads (compact, capped), what Tavily is sent (through the real
`AsyncTavilyClient` to a fake Tavily on loopback), and when the tool is not offered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.persona import EndCallTool, Persona, Tools, WebSearchTool
from bridge.tools.base import ToolEnv
from bridge.tools.catalogue import build_tools, unavailable_tools
from bridge.tools.web_search import compact
from tests.conftest import make_settings
from tests.fakes.realtime import FakeRealtimeServer, Say
from tests.fakes.tavily import FakeTavily, result
from tests.tools.helpers import TAVILY_KEY, bridged_call

REPO = Path(__file__).resolve().parents[2]

RESULTS = [
    result(
        "Northwind R7 firmware 4.2 released",
        "https://northwind.example/r7/firmware",
        "Firmware 4.2 for the R7 fixes the 5 GHz drop-outs\n"
        "and adds WPA3.   Install it from the app.",
    ),
    result(
        "R7 user manual", "https://northwind.example/r7/manual", "Chapter 3: status lights. " * 40
    ),
    result("Forum: R7 keeps rebooting", "https://forum.example/t/123", "Try a factory reset."),
]


def support_persona(**web_search: object) -> Persona:
    return Persona(
        name="support",
        instructions="Help with routers.",
        greeting="Hi.",
        tools=Tools(web_search=WebSearchTool(**web_search), end_call=EndCallTool()),  # type: ignore[arg-type]
    )


def test_compaction_puts_the_answer_first_then_title_url_and_snippet_per_result() -> None:
    text = compact({"answer": "Version 4.2.", "results": RESULTS[:1]}, 2000)
    assert text == (
        "Answer: Version 4.2.\n\n"
        "[1] Northwind R7 firmware 4.2 released\n"
        "https://northwind.example/r7/firmware\n"
        "Firmware 4.2 for the R7 fixes the 5 GHz drop-outs and adds WPA3. Install it from the app."
    )


@pytest.mark.parametrize(("cap", "kept"), [(200, 1), (333, 2), (700, 2), (1500, 3)])
def test_compaction_never_exceeds_the_cap_and_cuts_only_inside_a_snippet(
    cap: int, kept: int
) -> None:
    text = compact({"answer": "Version 4.2 is current.", "results": RESULTS}, cap)
    assert len(text) <= cap
    answer, *blocks = text.split("\n\n")
    assert answer == "Answer: Version 4.2 is current."
    assert len(blocks) == kept
    for number, (block, full) in enumerate(zip(blocks, RESULTS, strict=False), 1):
        title, url, snippet = block.split("\n")
        # Titles and URLs whole; a snippet whole, or cut with an ellipsis.
        assert (title, url) == (f"[{number}] {full['title']}", full["url"])
        whole = " ".join(full["content"].split())
        assert snippet == whole or (snippet.endswith("…") and whole.startswith(snippet[:-1]))


def test_compaction_of_nothing_found_says_so() -> None:
    assert compact({"answer": None, "results": []}, 500, "r7 firmware") == (
        "No results found for 'r7 firmware'."
    )


async def test_the_real_client_searches_the_configured_base_url_with_the_personas_limits() -> None:
    with FakeTavily(TAVILY_KEY, answer="Version 4.2.", results=RESULTS) as tavily:
        settings = make_settings(TAVILY_API_KEY=TAVILY_KEY, TAVILY_API_BASE_URL=tavily.url)
        persona = support_persona(max_results=2, max_chars=400)
        tool = build_tools(persona, settings)["web_search"]
        env = ToolEnv(persona, settings, "CA" + "1" * 32)
        try:
            outcome = await tool.run({"query": "  R7   firmware\n"}, env)
        finally:
            assert tool.close is not None
            await tool.close()
    (request,) = tavily.requests
    assert request.path == "/search"
    assert request.headers["Authorization"] == f"Bearer {TAVILY_KEY}"
    assert request.body["query"] == "R7 firmware"
    assert request.body["max_results"] == 2
    assert request.body["include_answer"] is True
    assert outcome.ok and len(outcome.output) <= 400
    assert outcome.output.startswith("Answer: Version 4.2.\n\n[1] Northwind R7 firmware 4.2")
    assert "[2] R7 user manual" in outcome.output and "[3]" not in outcome.output


async def test_an_empty_query_is_an_error_for_the_model_without_a_request() -> None:
    with FakeTavily(TAVILY_KEY) as tavily:
        settings = make_settings(TAVILY_API_KEY=TAVILY_KEY, TAVILY_API_BASE_URL=tavily.url)
        persona = support_persona()
        tool = build_tools(persona, settings)["web_search"]
        outcome = await tool.run({"query": "  "}, ToolEnv(persona, settings, "CA1"))
    assert not outcome.ok and "query" in (outcome.error or "")
    assert tavily.requests == []


def test_without_a_tavily_key_web_search_is_not_offered_and_start_up_says_why() -> None:
    persona = support_persona()
    without = make_settings()
    assert [t.name for t in build_tools(persona, without).function_tools] == ["end_call"]
    (reason,) = unavailable_tools([persona], without)
    assert (reason.persona, reason.tool) == ("support", "web_search")
    assert "TAVILY_API_KEY is not set" in str(reason)

    with_key = make_settings(TAVILY_API_KEY=TAVILY_KEY)
    tools = build_tools(persona, with_key).function_tools
    assert [t.name for t in tools] == ["web_search", "end_call"]
    assert tools[0].parameters["required"] == ["query"]
    assert unavailable_tools([persona], with_key) == []


@pytest.mark.parametrize("with_key", [True, False])
async def test_the_session_offers_web_search_only_with_a_key(with_key: bool) -> None:
    with FakeTavily(TAVILY_KEY) as tavily:
        async with FakeRealtimeServer("ga", [[Say("Hi", 100)]]) as fake:
            async with bridged_call(
                fake, support_persona(), tavily=tavily if with_key else None
            ) as call:
                update = await call.session.wait_for_event("session.update")
            assert fake.violations == []
    names = [t["name"] for t in update["session"].get("tools", [])]
    assert names == (["web_search", "end_call"] if with_key else ["end_call"])


_FIRST_SEARCH = """
import asyncio, contextlib, json, sys
from bridge.app import create_app
from bridge.persona import Persona, Tools, WebSearchTool
from bridge.tools.base import ToolEnv
from bridge.tools.catalogue import build_tools
from tests.conftest import make_settings
from tests.fakes.tavily import FakeTavily
from tests.tools.helpers import TAVILY_KEY

async def first_search(start_up: bool) -> list[str]:
    tools = Tools(web_search=WebSearchTool())
    persona = Persona(name="support", instructions="Help.", greeting="Hi.", tools=tools)
    with FakeTavily(TAVILY_KEY, answer="4.2") as tavily:
        settings = make_settings(
            OPENAI_API_KEY="sk-test", TAVILY_API_KEY=TAVILY_KEY, TAVILY_API_BASE_URL=tavily.url
        )
        app = create_app(settings, persona)
        async with contextlib.AsyncExitStack() as stack:
            if start_up:
                await stack.enter_async_context(app.router.lifespan_context(app))
            tool = build_tools(persona, settings)["web_search"]
            env = ToolEnv(persona, settings, "CA" + "1" * 32)
            before = set(sys.modules)
            outcome = await tool.run({"query": "R7 firmware"}, env)
            await tool.close()
            assert outcome.ok, outcome
            return sorted(set(sys.modules) - before)

print(json.dumps(asyncio.run(first_search(sys.argv[1] == "start-up"))))
"""


@pytest.mark.parametrize("start_up", [True, False], ids=["after start-up", "without start-up"])
def test_the_first_search_of_a_process_imports_nothing_on_the_event_loop(start_up: bool) -> None:
    # httpx loads httpcore, h11 and anyio's asyncio backend on first use: some 25-30 ms of
    # imports that would stall every call's audio on the event loop. The app's start-up does
    # them (and builds the TLS context) before any call. Each case runs in a fresh interpreter,
    # since this one has long loaded them.
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_SEARCH, "start-up" if start_up else "bare"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = json.loads(done.stdout.splitlines()[-1])
    if start_up:
        assert imported == []
    else:  # what start-up saves the first search: the check above can fail
        assert "anyio._backends._asyncio" in imported
