"""The browser softphone: `GET /softphone`, a page that calls the bridge like Twilio does.

The page takes the microphone (getUserMedia + an AudioWorklet at 8 kHz), encodes μ-law,
asks `/incoming-call` for TwiML exactly as Twilio's webhook would, opens the `<Stream>` it
names and speaks the Media Streams protocol: `connected`, `start` with the `<Parameter>`s,
20 ms `media` frames, marks echoed once their audio has played, `clear` honoured (pending
marks echoed at once, as Twilio does). The live transcript comes from
`/softphone-events` (server-sent events, fed by the bridge's own transcript log lines).

It is on in local mode (no `TWILIO_AUTH_TOKEN`) and off in signed mode, where the page
could not sign its webhook anyway, unless `SOFTPHONE_ENABLED` says otherwise.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Final

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from bridge.settings import Settings
from bridge.softphone.transcripts import FEED, TranscriptFeed

KEEPALIVE_S: Final = 15.0
_CALL_SID = re.compile(r"^CA[0-9a-f]{32}$")
_ASSETS: Final = {
    "softphone.js": "application/javascript",
    "worklet.js": "application/javascript",
}


def softphone_enabled(settings: Settings) -> bool:
    """On in local (unsigned) mode, off when signed, unless `SOFTPHONE_ENABLED` overrides."""
    if settings.SOFTPHONE_ENABLED is not None:
        return settings.SOFTPHONE_ENABLED
    return not settings.signed


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def softphone_router(feed: TranscriptFeed = FEED) -> APIRouter:
    """The page, its scripts and its transcript events."""
    router = APIRouter()
    feed.install()

    @router.get("/softphone", include_in_schema=False)
    async def page() -> HTMLResponse:
        html = await asyncio.to_thread(_asset, "softphone.html")  # no file I/O on the loop
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.get("/softphone/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = _ASSETS.get(name)
        if media_type is None:
            return Response(status_code=404)
        body = await asyncio.to_thread(_asset, name)
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})

    @router.get("/softphone-events", include_in_schema=False)
    async def events(request: Request, call_sid: str = Query(...)) -> Response:
        if not _CALL_SID.match(call_sid):
            return Response("bad call_sid", status_code=400)
        feed.install()
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


__all__ = ["softphone_enabled", "softphone_router"]
