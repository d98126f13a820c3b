"""The browser softphone: `GET /softphone`, a page that calls the bridge like Twilio does.

The page takes the microphone (getUserMedia + an AudioWorklet at 8 kHz), encodes μ-law,
asks `/incoming-call` for TwiML exactly as Twilio's webhook would, opens the `<Stream>` it
names and speaks the Media Streams protocol: `connected`, `start` with the `<Parameter>`s,
20 ms `media` frames, marks echoed once their audio has played, `clear` honoured (pending
marks echoed at once, as Twilio does). The live transcript comes from
`/softphone-events` (server-sent events of the lines the call runtime publishes).

Only the page that placed a call may read its transcript and its caller's number: before it
rings, the page asks `POST /softphone/watch` for a ticket, a fresh CallSid and a key (an HMAC
of that CallSid under a secret of this process), places the call under that CallSid, and
presents the key to `/softphone-events`. A CallSid alone, or another call's, gets 403.

`GET /softphone/personas` lists the personas of the process and the numbers each answers,
so the page can call one of them by posting its number as `To`, as a real caller would dial.

It is on in local mode (no `TWILIO_AUTH_TOKEN`) and off in signed mode, where the page
could not sign its webhook anyway, unless `SOFTPHONE_ENABLED` says otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator
from importlib import resources
from typing import Final

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from bridge.persona import PersonaBook
from bridge.settings import Settings
from bridge.softphone.transcripts import FEED, TranscriptFeed

KEEPALIVE_S: Final = 15.0
MAX_WATCHED_CALLS: Final = 64
"""Calls watched at once by pages of this process (a softphone is one developer's tool)."""
_CALL_SID = re.compile(r"^CA[0-9a-f]{32}$")
_ASSETS: Final = {
    "softphone.js": "application/javascript",
    "feed.js": "application/javascript",
    "worklet.js": "application/javascript",
}


def softphone_enabled(settings: Settings) -> bool:
    """On in local (unsigned) mode, off when signed, unless `SOFTPHONE_ENABLED` overrides."""
    if settings.SOFTPHONE_ENABLED is not None:
        return settings.SOFTPHONE_ENABLED
    return not settings.signed


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


class WatchKeys:
    """Watch tickets without a table: the key of a CallSid is its HMAC under a secret made
    when the router is, so nothing is kept per ticket and a key cannot be guessed from the
    CallSid (which the call's log lines and Twilio's requests carry)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def key(self, call_sid: str) -> str:
        return hmac.new(self._secret, call_sid.encode(), hashlib.sha256).hexdigest()

    def ticket(self) -> dict[str, str]:
        """A fresh CallSid for the page to place its call under, and its key."""
        call_sid = "CA" + secrets.token_hex(16)
        return {"call_sid": call_sid, "key": self.key(call_sid)}

    def valid(self, call_sid: str, key: str) -> bool:
        return hmac.compare_digest(self.key(call_sid).encode(), key.encode())


def persona_choices(book: PersonaBook) -> list[dict[str, object]]:
    """What the page offers to call: each persona's name, the numbers it answers, and
    whether it is the default (which also answers every number no persona lists)."""
    return [
        {"name": p.name, "numbers": list(p.numbers), "default": p is book.default} for p in book
    ]


def softphone_router(
    feed: TranscriptFeed = FEED,
    keys: WatchKeys | None = None,
    personas: PersonaBook | None = None,
) -> APIRouter:
    """The page, its scripts, its watch tickets, its persona list and its transcript events."""
    router = APIRouter()
    keys = keys or WatchKeys()
    choices = orjson.dumps(persona_choices(personas or PersonaBook.builtin()))

    @router.get("/softphone", include_in_schema=False)
    async def page() -> HTMLResponse:
        html = await asyncio.to_thread(_asset, "softphone.html")  # no file I/O on the loop
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.post("/softphone/watch", include_in_schema=False)
    async def watch() -> Response:
        ticket = keys.ticket()
        return Response(
            orjson.dumps(ticket),
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    @router.get("/softphone/personas", include_in_schema=False)
    async def persona_list() -> Response:
        return Response(choices, media_type="application/json")

    @router.get("/softphone/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = _ASSETS.get(name)
        if media_type is None:
            return Response(status_code=404)
        body = await asyncio.to_thread(_asset, name)
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})

    @router.get("/softphone-events", include_in_schema=False)
    async def events(
        request: Request, call_sid: str = Query(...), key: str = Query("", max_length=128)
    ) -> Response:
        if not _CALL_SID.match(call_sid):
            return Response("bad call_sid", status_code=400)
        if not keys.valid(call_sid, key):
            return Response("not your call", status_code=403)
        if not feed.watching(call_sid) and feed.watched >= MAX_WATCHED_CALLS:
            return Response("too many calls watched", status_code=503)
        queue = feed.subscribe(call_sid)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": subscribed\n\n"
                while not await request.is_disconnected():
                    try:
                        line = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    yield b"data: " + orjson.dumps(line, default=str) + b"\n\n"
            finally:
                feed.unsubscribe(call_sid, queue)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


__all__ = ["WatchKeys", "persona_choices", "softphone_enabled", "softphone_router"]
