"""examples/receiver.py on a loopback port: signed requests are stored, unsigned ones refused,
a retried event stored once, and a real call's record arrives from the bridge."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

import httpx
import uvicorn

from bridge import signing
from bridge.persona import DEFAULT_PERSONA, HttpTool
from tests.conftest import LogCapture, bridged_call, serving, wait_until
from tests.fakes.realtime import FakeRealtimeServer, FunctionCall, Say

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec-test-0123456789"


def receiver_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("receiver", ROOT / "examples" / "receiver.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def running_receiver(db: Path) -> AsyncIterator[str]:
    app = receiver_module().create_app(SECRET, db)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    async with serving(config) as (_, port):
        yield f"http://127.0.0.1:{port}"


def signed(body: bytes) -> dict[str, str]:
    return {signing.HEADER: signing.sign(SECRET, body, time.time())}


def table(db: Path, name: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(f"SELECT * FROM {name}"))


async def test_signed_requests_are_stored_and_unsigned_ones_refused(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    message = {
        "tool": "take_message",
        "arguments": {"name": "Ana", "callback_number": "+12125550123", "reason": "reschedule"},
        "call": {"call_sid": "CA" + "1" * 32, "from": "+12125550123", "to": "+1", "persona": "r"},
    }
    body = json.dumps(message).encode()
    event = json.dumps({"id": "evt_1", "type": "call.started", "call_sid": "CA1", "data": {}})
    async with running_receiver(db) as url, httpx.AsyncClient(base_url=url) as client:
        unsigned = await client.post("/tools/take_message", content=body)
        forged = await client.post(
            "/tools/take_message",
            content=body,
            headers={signing.HEADER: signing.sign("another-secret", body, time.time())},
        )
        ok = await client.post("/tools/take_message", content=body, headers=signed(body))
        first = await client.post("/events", content=event, headers=signed(event.encode()))
        again = await client.post("/events", content=event, headers=signed(event.encode()))
        listed = (await client.get("/messages")).json()
    assert (unsigned.status_code, forged.status_code) == (401, 401)
    assert ok.status_code == 200 and ok.json() == {"status": "recorded", "message_id": 1}
    assert first.json() == {"ok": True, "duplicate": False}
    assert again.json() == {"ok": True, "duplicate": True}
    assert [(m["name"], m["reason"]) for m in listed] == [("Ana", "reschedule")]
    assert len(table(db, "messages")) == 1 and len(table(db, "events")) == 1


async def test_a_real_call_leaves_its_record_in_the_receiver(
    tmp_path: Path, logs: LogCapture
) -> None:
    db = tmp_path / "r.db"
    async with running_receiver(db) as url:
        async with FakeRealtimeServer("ga", [[Say("Hello there.", 300)]]) as fake:
            async with bridged_call(
                fake, WEBHOOK_SIGNING_SECRET=SECRET, CALL_WEBHOOK_URL=url + "/events"
            ) as (_, stream, _session):
                await wait_until(lambda: stream.played_ms_total >= 300, 5, "the greeting")
                await stream.wait_playback_idle()
        await wait_until(lambda: table(db, "calls"), 5, "the call's record")
    ((call_sid, _caller, _called, persona, reason, duration, transcript, tools, rec),) = table(
        db, "calls"
    )
    assert call_sid == stream.target.call_sid
    assert (persona, reason, tools, rec) == ("default", "caller_hangup", "[]", "null")
    assert duration > 0.3
    assert [line["text"] for line in json.loads(str(transcript))] == ["Hello there."]
    assert [row[2] for row in table(db, "events")] == ["call.started", "call.ended"]
    assert logs.events("call_event_undelivered") == []


async def test_the_receptionists_message_and_the_calls_record_both_reach_the_receiver(
    tmp_path: Path, logs: LogCapture
) -> None:
    db = tmp_path / "r.db"
    message = {"name": "Ana Lima", "callback_number": "+12125550123", "reason": "reschedule"}
    script = [[FunctionCall("take_message", message)], [Say("I have noted it.", 300)]]
    async with running_receiver(db) as url:
        take_message = HttpTool.model_validate(
            {
                "type": "http",
                "description": "Record a message for the practice.",
                "parameters": {"type": "object", "properties": {}},
                "url": url + "/tools/take_message",
            }
        )
        persona = DEFAULT_PERSONA.model_copy(
            update={
                "tools": DEFAULT_PERSONA.tools.model_copy(update={"take_message": take_message})
            }
        )
        async with FakeRealtimeServer("ga", script) as fake:
            async with bridged_call(
                fake, persona, WEBHOOK_SIGNING_SECRET=SECRET, CALL_WEBHOOK_URL=url + "/events"
            ) as (_, stream, session):
                await session.wait_for_event("response.done", 5, nth=2)
                await wait_until(lambda: stream.played_ms_total >= 300, 5, "the answer")
        await wait_until(lambda: table(db, "calls"), 5, "the call's record")
    ((_, _, call_sid, caller, name, number, reason),) = table(db, "messages")
    assert (call_sid, name, number, reason) == (
        stream.target.call_sid,
        "Ana Lima",
        "+12125550123",
        "reschedule",
    )
    ((_, _, _, _, _, _, _, tool_calls, _),) = table(db, "calls")
    (tool,) = json.loads(str(tool_calls))
    assert (tool["name"], tool["arguments"], tool["ok"]) == ("take_message", message, True)
    assert json.loads(tool["result"]) == {"status": "recorded", "message_id": 1}
    assert caller == "+15550001111"
