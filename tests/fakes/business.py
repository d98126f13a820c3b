"""The business's side of HTTP tools: a receiver on a loopback port that records every
request exactly as it arrived (method, path, raw query string, headers, body) and answers by
path: `/ok` with JSON, `/text` with plain text, `/big` with 20 KiB, `/fail` with 500, `/slow`
after `slow_s`. It checks each signature with `bridge.signing.verify`, as a real receiver would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from bridge.signing import HEADER, verify

ANSWER = {"ok": True, "message_id": "M-1042"}
BIG_BYTES = 20 * 1024


@dataclass
class Received:
    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    body: bytes
    signed: bool
    """Whether `X-Voicebridge-Signature` verified over the body (a GET: the query string)."""

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class FakeBusiness:
    secret: str
    slow_s: float = 3.0
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        signed_over = scope["query_string"] if scope["method"] == "GET" else body
        signed = verify(self.secret, signed_over, headers.get(HEADER.lower()), time.time())
        path = scope["path"]
        self.requests.append(
            Received(scope["method"], path, scope["query_string"], headers, body, signed)
        )
        status, kind, payload = 200, b"application/json", orjson.dumps(ANSWER)
        if not signed:
            status, payload = 401, b'{"error": "bad signature"}'
        elif path == "/slow":
            await asyncio.sleep(self.slow_s)
        elif path == "/fail":
            status, kind, payload = 500, b"text/plain", b"database is down"
        elif path == "/text":
            kind, payload = b"text/plain", b"Message saved for Dr Patel."
        elif path == "/big":
            kind, payload = b"text/plain", b"x" * BIG_BYTES
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", kind), (b"content-length", b"%d" % len(payload))],
            }
        )
        await send({"type": "http.response.body", "body": payload})


@asynccontextmanager
async def fake_business(secret: str, **kwargs: Any) -> AsyncIterator[FakeBusiness]:
    """The receiver, serving on 127.0.0.1 in this event loop."""
    from tests.conftest import serving

    business = FakeBusiness(secret, **kwargs)
    config = uvicorn.Config(business, host="127.0.0.1", port=0, log_level="warning")
    async with serving(config) as (_, port):
        business.port = port
        yield business
