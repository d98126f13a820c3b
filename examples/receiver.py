"""An example of the business's side: it takes the receptionist's messages and keeps a record
of every call, in SQLite, checking that each request really comes from the bridge.

    WEBHOOK_SIGNING_SECRET=change-me .venv/bin/python examples/receiver.py   # port 8090

and start the bridge with the same secret and `CALL_WEBHOOK_URL=http://127.0.0.1:8090/events`.
`GET /messages` and `GET /calls` show what arrived (newest first); each arrival is also
printed. Routes:

- `POST /tools/take_message`: the receptionist's HTTP tool; body
  `{"tool", "arguments": {"name", "callback_number", "reason"}, "call": {"call_sid", "from",
  "to", "persona"}}`; the answer is what the agent is told.
- `POST /events`: call events (`call.started`, `call.ended`, `call.recording`); a duplicate
  (the same `id`, delivered again after a lost answer) is acknowledged and not stored twice.

A request without a valid `X-Voicebridge-Signature` (see `bridge/signing.py`) gets 401.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from bridge import signing

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, at REAL, call_sid TEXT, caller TEXT,
    name TEXT, callback_number TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, at REAL, type TEXT, call_sid TEXT,
    body TEXT);
CREATE TABLE IF NOT EXISTS calls (call_sid TEXT PRIMARY KEY, caller TEXT, called TEXT,
    persona TEXT, reason TEXT, duration_s REAL, transcript TEXT, tool_calls TEXT,
    recording TEXT);
"""


def create_app(secret: str, db_path: str | Path) -> FastAPI:
    app = FastAPI(title="voicebridge example receiver")
    db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
    db.executescript(SCHEMA)

    async def signed_json(request: Request) -> Any:
        body = await request.body()
        if not signing.verify(secret, body, request.headers.get(signing.HEADER), time.time()):
            return None
        return json.loads(body)

    def store_message(payload: dict[str, Any]) -> int:
        args, call = payload.get("arguments") or {}, payload.get("call") or {}
        cursor = db.execute(
            "INSERT INTO messages (at, call_sid, caller, name, callback_number, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), call.get("call_sid"), call.get("from"), args.get("name"),
             args.get("callback_number"), args.get("reason")),
        )  # fmt: skip
        print(f"message from {args.get('name')!r}: {args.get('reason')!r}", flush=True)
        return int(cursor.lastrowid or 0)

    def store_event(event: dict[str, Any]) -> bool:
        """False if this event id was stored already (a retried delivery)."""
        cursor = db.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
            (event["id"], time.time(), event["type"], event["call_sid"], json.dumps(event)),
        )
        if cursor.rowcount == 0:
            return False
        data = event["data"]
        if event["type"] == "call.ended":
            db.execute(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event["call_sid"], data["from"], data["to"], data["persona"], data["reason"],
                 data["duration_s"], json.dumps(data["transcript"]),
                 json.dumps(data["tool_calls"]), json.dumps(data["recording"])),
            )  # fmt: skip
            lines = len(data["transcript"])
            print(f"call {event['call_sid']} ended ({data['reason']}, {lines} lines)", flush=True)
        return True

    @app.post("/tools/take_message")
    async def take_message(request: Request) -> JSONResponse:
        payload = await signed_json(request)
        if payload is None:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        message_id = await run_in_threadpool(store_message, payload)
        return JSONResponse({"status": "recorded", "message_id": message_id})

    @app.post("/events")
    async def events(request: Request) -> JSONResponse:
        event = await signed_json(request)
        if event is None:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        fresh = await run_in_threadpool(store_event, event)
        return JSONResponse({"ok": True, "duplicate": not fresh})

    def rows(query: str) -> list[dict[str, Any]]:
        cursor = db.execute(query)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @app.get("/messages")
    async def messages() -> list[dict[str, Any]]:
        return await run_in_threadpool(rows, "SELECT * FROM messages ORDER BY id DESC")

    @app.get("/calls")
    async def calls() -> list[dict[str, Any]]:
        return await run_in_threadpool(rows, "SELECT * FROM calls ORDER BY rowid DESC")

    return app


if __name__ == "__main__":
    import uvicorn

    secret = os.environ.get("WEBHOOK_SIGNING_SECRET")
    if not secret:
        sys.exit("set WEBHOOK_SIGNING_SECRET (the same value as the bridge's)")
    port = int(os.environ.get("RECEIVER_PORT", "8090"))
    app = create_app(secret, os.environ.get("RECEIVER_DB", "receiver.db"))
    uvicorn.run(app, host="127.0.0.1", port=port)
