"""The catalogue builds a call's tools once; the session offers exactly the tools that run."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bridge.persona import (
    TOOL_NAMES,
    EndCallTool,
    Persona,
    Tools,
    TransferCallTool,
    TransferTarget,
    WebSearchTool,
)
from bridge.settings import Settings
from bridge.tools import catalogue
from bridge.tools.base import Tool, ToolEnv, ToolResult
from bridge.tools.catalogue import CATALOGUE, CallTools, CatalogueEntry, build_tools
from tests.conftest import make_settings
from tests.tools.helpers import ACCOUNT_SID, AUTH_TOKEN, TAVILY_KEY


def everything() -> Persona:
    return Persona(
        name="everything",
        instructions="Help.",
        greeting="Hi.",
        tools=Tools(
            web_search=WebSearchTool(),
            transfer_call=TransferCallTool(),
            end_call=EndCallTool(),
        ),
        transfer_targets={"operator": TransferTarget(number="+1 212 555 0110")},
    )


def all_services() -> Settings:
    return make_settings(
        TAVILY_API_KEY=TAVILY_KEY,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        PUBLIC_URL="https://voice.example.com",
    )


def test_the_catalogue_knows_every_tool_a_persona_may_list() -> None:
    assert tuple(CATALOGUE) == TOOL_NAMES


def test_each_tool_is_built_once_and_offered_as_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    builds: Counter[str] = Counter()

    def counting(name: str, entry: CatalogueEntry) -> CatalogueEntry:
        def build(persona: Persona, settings: Settings) -> Tool:
            builds[name] += 1
            return entry.build(persona, settings)

        return CatalogueEntry(entry.unavailable, build)

    monkeypatch.setattr(
        catalogue, "CATALOGUE", {name: counting(name, e) for name, e in CATALOGUE.items()}
    )
    tools = build_tools(everything(), all_services())
    assert builds == {"web_search": 1, "transfer_call": 1, "end_call": 1}
    assert list(tools) == ["web_search", "transfer_call", "end_call"]  # the persona's order
    assert [f.name for f in tools.function_tools] == list(tools)
    assert tools.function_tools == tuple(tool.function_tool for tool in tools.values())
    assert builds == {"web_search": 1, "transfer_call": 1, "end_call": 1}  # reading builds none


def test_a_tool_whose_service_is_missing_is_neither_offered_nor_run() -> None:
    tools = build_tools(everything(), make_settings())
    offered = ["transfer_call", "end_call"]  # web_search needs TAVILY_API_KEY
    assert (list(tools), [f.name for f in tools.function_tools]) == (offered, offered)
    assert tools.get("web_search") is None


async def _noop(args: dict[str, Any], env: ToolEnv) -> ToolResult:
    return ToolResult("{}")


def test_call_tools_refuses_two_tools_of_one_name_and_cannot_be_changed() -> None:
    tool = Tool("lookup", "Look it up.", {"type": "object"}, _noop, 1.0)
    with pytest.raises(ValueError, match="two tools are named 'lookup'"):
        CallTools([tool, tool])
    tools = CallTools([tool])
    with pytest.raises(TypeError):
        tools["other"] = tool  # type: ignore[index]
    assert (len(tools), tools["lookup"] is tool, repr(tools)) == (1, True, "CallTools(['lookup'])")
