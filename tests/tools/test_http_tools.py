"""HTTP tools end to end: the fake "model" calls a persona's own tool, the bridge sends one
signed request to a receiver on a loopback port, and the answer (or the failure) becomes the
function output while the caller's audio keeps flowing."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest

from bridge.persona import EndCallTool, HttpTool, Persona, TurnDetectionConfig, load_personas
from bridge.signing import HEADER, sign, verify
from bridge.sim.audio import speech_like
from bridge.tools import http_tool
from bridge.tools.base import ToolEnv
from bridge.tools.catalogue import build_tools, unavailable_tools
from tests.conftest import TEST_SECRETS, LogCapture, free_port, make_settings, wait_until
from tests.fakes.business import ANSWER, BIG_BYTES, fake_business
from tests.fakes.realtime import FakeRealtimeServer, FunctionCall, Say
from tests.persona._support import EXAMPLES
from tests.tools.helpers import bridged_call, function_outputs

SIGNING_SECRET = "whsec-test-0123456789abcdef"
CRM_TOKEN = "crm-token-test-0123456789"
TEST_SECRETS.update({SIGNING_SECRET, CRM_TOKEN})
MAX_APPEND_GAP_S = 0.100
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "callback_number": {"type": "string"},
        "reason": {"type": "string"},
    },
    "required": ["name", "reason"],
}
MESSAGE = {"name": "Ana", "callback_number": "+15550001111", "reason": "a toothache"}


@pytest.fixture(autouse=True)
def _crm_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VB_TEST_CRM_TOKEN", CRM_TOKEN)
    # Not scrubbed in tests: the run-wide scan then proves no line ever carried the token.
    monkeypatch.setattr("bridge.tools.catalogue.add_secrets", lambda _values: None)


def http(url: str, **fields: Any) -> HttpTool:
    values: dict[str, Any] = {
        "type": "http",
        "description": "Record a message for the practice.",
        "parameters": SCHEMA,
        "url": url,
        "headers": {"Authorization": "Bearer ${VB_TEST_CRM_TOKEN}"},
        "timeout_seconds": 5,
    }
    values.update(fields)
    return HttpTool.model_validate(values)


def desk(create_response: bool = True, **tools: HttpTool) -> Persona:
    return Persona.model_validate(
        {
            "name": "desk",
            "instructions": "Take messages.",
            "greeting": "Hi.",
            "turn_detection": TurnDetectionConfig(create_response=create_response),
            "tools": {"end_call": EndCallTool(), **tools},
        }
    )


def output_of(call: Any) -> dict[str, Any]:
    (output,) = function_outputs(call.session)
    return dict(json.loads(output["output"]))


async def test_a_tool_call_is_one_signed_post_with_the_call_and_the_answer_is_the_output(
    logs: LogCapture,
) -> None:
    script = [[FunctionCall("take_message", MESSAGE)], [Say("Saved.", 200)]]
    async with fake_business(SIGNING_SECRET) as business:
        persona = desk(take_message=http(business.url("/ok")))
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, persona, WEBHOOK_SIGNING_SECRET=SIGNING_SECRET) as call:
                await call.session.wait_for_event("response.done", 5, nth=2)
                offered = [t["name"] for t in call.session.config.tools]
            assert fake.violations == []
    assert offered == ["end_call", "take_message"]
    (request,) = business.requests
    assert (request.method, request.path, request.query, request.signed) == (
        "POST",
        "/ok",
        b"",
        True,
    )
    assert verify(SIGNING_SECRET, request.body, request.headers[HEADER.lower()], time.time())
    assert not verify("another-secret", request.body, request.headers[HEADER.lower()], time.time())
    assert request.headers["authorization"] == f"Bearer {CRM_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    (started,) = logs.events("call_started")
    assert request.json == {
        "tool": "take_message",
        "arguments": MESSAGE,
        "call": {
            "call_sid": call.call_sid,
            "from": started["from"],
            "to": started["to"],
            "persona": "desk",
        },
    }
    assert started["from"] == "+15550001111" and started["to"] == "+15550002222"
    assert output_of(call) == ANSWER
    (line,) = logs.events("tool_call")
    assert (line["name"], line["arguments"], line["ok"]) == ("take_message", MESSAGE, True)
    text = "\n".join(logs.lines)
    assert CRM_TOKEN not in text and SIGNING_SECRET not in text


async def test_a_get_sends_the_arguments_as_query_parameters_signed_over_the_query() -> None:
    script = [[FunctionCall("take_message", MESSAGE)], [Say("Saved.", 200)]]
    async with fake_business(SIGNING_SECRET) as business:
        tool = http(business.url("/text?source=phone"), method="get")
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(
                fake, desk(take_message=tool), WEBHOOK_SIGNING_SECRET=SIGNING_SECRET
            ) as call:
                await call.session.wait_for_event("response.done", 5, nth=2)
    (request,) = business.requests
    assert (request.method, request.path, request.body, request.signed) == (
        "GET",
        "/text",
        b"",
        True,
    )
    assert request.query == (
        b"source=phone&name=Ana&callback_number=%2B15550001111&reason=a+toothache"
    )
    (output,) = function_outputs(call.session)
    assert output["output"] == "Message saved for Dr Patel."


async def test_arguments_that_break_the_schema_make_no_request_and_an_error_the_model_reads(
    logs: LogCapture,
) -> None:
    script = [[FunctionCall("take_message", {"name": "Ana"})], [Say("What is it about?", 200)]]
    async with fake_business(SIGNING_SECRET) as business:
        persona = desk(take_message=http(business.url("/ok")))
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, persona, WEBHOOK_SIGNING_SECRET=SIGNING_SECRET) as call:
                await call.session.wait_for_event("response.done", 5, nth=2)
                assert logs.events("call_ended") == []
    assert len(business.requests) == 0
    assert output_of(call) == {
        "ok": False,
        "error": "take_message: invalid arguments: 'reason' is a required property",
    }
    assert logs.events("tool_call")[0]["ok"] is False


async def test_timeouts_5xx_and_refused_connections_are_error_outputs_while_audio_flows(
    logs: LogCapture,
) -> None:
    # Three tools fail three ways at once; the caller talks all through, and every 20 ms frame
    # still reaches the model on time.
    calls = [
        FunctionCall("slow_tool", MESSAGE),
        FunctionCall("broken_tool", MESSAGE),
        FunctionCall("gone_tool", MESSAGE),
    ]
    script = [[Say("Hello", 200), *calls], [Say("Sorry, that did not work.", 200)]]
    async with fake_business(SIGNING_SECRET, slow_s=3.0) as business:
        persona = desk(
            create_response=False,
            slow_tool=http(business.url("/slow"), timeout_seconds=1.0),
            broken_tool=http(business.url("/fail")),
            gone_tool=http(f"http://127.0.0.1:{free_port()}/hooks"),  # nothing listens there
        )
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(fake, persona, WEBHOOK_SIGNING_SECRET=SIGNING_SECRET) as call:
                await wait_until(lambda: business.requests, 5, "the requests to start")
                call.stream.say(speech_like(1600))
                await call.session.wait_for_event(
                    "conversation.item.create",
                    6,
                    where=lambda e: e["item"]["type"] == "function_call_output",
                    nth=3,
                )
                await logs.wait_for("tool_call", 3)
                assert call.bridge.calls.active_calls == 1
            assert fake.violations == []
    by_id = {
        e["item"]["call_id"]: e["item"]["name"]
        for e in call.session.server_events("response.output_item.done")
        if e["item"]["type"] == "function_call"
    }
    errors = {by_id[o["call_id"]]: json.loads(o["output"]) for o in function_outputs(call.session)}
    assert errors == {
        "slow_tool": {"ok": False, "error": "slow_tool timed out after 1 s"},
        "broken_tool": {"ok": False, "error": "broken_tool failed: HTTP 500: database is down"},
        "gone_tool": {"ok": False, "error": "gone_tool failed: ConnectError"},
    }
    began = next(
        r.time for r in call.session.sent if r.type == "response.function_call_arguments.done"
    )
    answered = max(
        r.time
        for r in call.session.received
        if r.type == "conversation.item.create"
        and r.event["item"]["type"] == "function_call_output"
    )
    appends = [
        r.time
        for r in call.session.received
        if r.type == "input_audio_buffer.append" and began <= r.time <= answered
    ]
    gaps = [b - a for a, b in itertools.pairwise(appends)]
    print(f"\nappends during the tools: {len(appends)}, max gap {max(gaps) * 1000:.1f} ms")
    assert answered - began >= 0.9  # the slow one really waited for its 1 s timeout
    assert len(appends) >= 40
    assert max(gaps) < MAX_APPEND_GAP_S
    assert sorted(line["name"] for line in logs.events("tool_call")) == [
        "broken_tool",
        "gone_tool",
        "slow_tool",
    ]
    assert all(line["ok"] is False for line in logs.events("tool_call"))
    assert CRM_TOKEN not in "\n".join(logs.lines)


async def test_an_answer_is_cut_at_16_kib() -> None:
    async with fake_business(SIGNING_SECRET) as business:
        settings = make_settings(WEBHOOK_SIGNING_SECRET=SIGNING_SECRET)
        persona = desk(big=http(business.url("/big")))
        tools = build_tools(persona, settings)
        env = ToolEnv(persona, settings, "CA" + "1" * 32, "+15550001111", "+15550002222")
        try:
            result = await tools["big"].run(MESSAGE, env)
        finally:
            await tools["big"].close()  # type: ignore[misc]
    assert result.ok and len(business.requests) == 1
    assert http_tool.MAX_OUTPUT_BYTES == 16384 < BIG_BYTES
    assert result.output == "x" * 16384 + "…[cut]"


def test_without_the_signing_secret_http_tools_are_not_offered_and_the_log_says_why() -> None:
    persona = desk(take_message=http("https://crm.example.com/hooks/message"))
    without = make_settings()
    assert list(build_tools(persona, without)) == ["end_call"]
    (entry,) = unavailable_tools([persona], without)
    assert (entry.persona, entry.tool) == ("desk", "take_message")
    assert "WEBHOOK_SIGNING_SECRET is not set" in entry.reason
    with_secret = make_settings(WEBHOOK_SIGNING_SECRET=SIGNING_SECRET)
    assert list(build_tools(persona, with_secret)) == ["end_call", "take_message"]
    assert unavailable_tools([persona], with_secret) == []


def test_the_resolved_header_values_are_the_personas_secrets_and_the_headers_stay_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tool = http("https://crm.example.com/hooks/message")
    assert tool.resolved_headers == {"Authorization": f"Bearer {CRM_TOKEN}"}
    assert tool.headers == {"Authorization": "Bearer ${VB_TEST_CRM_TOKEN}"}
    assert CRM_TOKEN not in repr(tool) and CRM_TOKEN not in tool.model_dump_json()
    assert desk(take_message=tool).secrets == (CRM_TOKEN,)
    registered: list[str] = []
    monkeypatch.setattr("bridge.tools.catalogue.add_secrets", registered.extend)
    from bridge.persona import PersonaBook
    from bridge.tools.catalogue import ToolCatalogue

    ToolCatalogue(make_settings(), PersonaBook([desk(take_message=tool)]))
    assert registered == [CRM_TOKEN]


def test_the_receptionist_offers_take_message_only_with_the_signing_secret() -> None:
    receptionist = load_personas(EXAMPLES / "receptionist.yaml").default
    tool = receptionist.tools.http["take_message"]
    assert (tool.url, tool.method) == ("http://127.0.0.1:8090/tools/take_message", "POST")
    assert tool.parameters["required"] == ["name", "reason"]
    entries = unavailable_tools([receptionist], make_settings())
    (entry,) = [e for e in entries if e.tool == "take_message"]
    assert (entry.tool, entry.reason) == (
        "take_message",
        "not offered: WEBHOOK_SIGNING_SECRET is not set (every request to the business is signed)",
    )
    offered = build_tools(receptionist, make_settings(WEBHOOK_SIGNING_SECRET=SIGNING_SECRET))
    assert list(offered) == ["transfer_call", "end_call", "take_message"]


def test_the_receivers_check_in_the_reference_accepts_our_signature_and_nothing_else() -> None:
    text = (EXAMPLES.parent / "docs" / "reference.md").read_text(encoding="utf-8")
    section = text[text.index("## HTTP tools") :]
    code = section[section.index("```python\n") + 10 : section.index("```\n", 10)]
    namespace: dict[str, Any] = {}
    exec(compile(code, "reference.md", "exec"), namespace)
    signed = namespace["signed"]
    body, now = b'{"tool":"take_message"}', time.time()
    header = sign(SIGNING_SECRET, body, now)
    assert signed(SIGNING_SECRET, header, body) is True
    assert signed(SIGNING_SECRET, header, body + b" ") is False
    assert signed("another-secret", header, body) is False
    assert signed(SIGNING_SECRET, sign(SIGNING_SECRET, body, now - 301), body) is False
    assert signed(SIGNING_SECRET, "t=soon,v1=00", body) is False
    assert signed(SIGNING_SECRET, "", body) is False


def test_the_server_logs_why_the_receptionists_http_tool_is_not_offered(logs: LogCapture) -> None:
    from bridge.app import create_app

    receptionist = load_personas(EXAMPLES / "receptionist.yaml").default
    create_app(make_settings(), receptionist)
    lines = [x for x in logs.events("tool_unavailable") if x["tool"] == "take_message"]
    assert [(x["level"], x["persona"], x["reason"]) for x in lines] == [
        (
            "warning",
            "receptionist",
            "not offered: WEBHOOK_SIGNING_SECRET is not set (every request to the business is "
            "signed)",
        )
    ]
