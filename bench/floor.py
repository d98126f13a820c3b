"""The floor: the smallest relay between Twilio and a Realtime model on the bridge's own stack.

What any Python bridge must spend, and nothing more: FastAPI routes on uvicorn configured and
started exactly as `voicebridge serve` does (`bridge.server.uvicorn_config`: websockets-sansio,
the same WebSocket options; `Server.run()`, so uvicorn picks uvloop), the upstream opened with
the same `websockets.connect` options as `bridge/realtime/upstream.py`, orjson for parsing. Per
call: on `start`, open the upstream, send a `session.update` (whose instructions name the
caller, as the bridge's do) and one `response.create`. Then each Twilio message is parsed, and
each `media` becomes one `input_audio_buffer.append` with the same payload; each upstream
message is parsed, and each audio delta becomes one Twilio `media` with the same payload,
followed by a `mark` (a relay that supports barge-in needs marks to know what was heard;
Twilio's own sample sends one per delta). No conversion, no framing, no logic: in pcm16 mode
the 24 kHz PCM goes to the caller as it came, which a real phone could not play but which costs
what the floor should cost.

`bench/load.py` runs it under the same load as the bridge and reports bridge/floor CPU.
Run by hand: `REALTIME_URL=ws://127.0.0.1:9000/v1/realtime .venv/bin/python bench/floor.py
--port 8090`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from urllib.parse import parse_qsl
from xml.sax.saxutils import quoteattr

import orjson
import uvicorn
import websockets
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, Response

from bridge.server import uvicorn_config

UPSTREAM_OPTIONS = {
    "max_size": 4 * 1024 * 1024,
    "open_timeout": 10.0,
    "compression": None,
    "ping_interval": 20,
    "ping_timeout": 20,
    "close_timeout": 1,
}
"""As `bridge.realtime.upstream.connect` opens the Realtime socket."""


def create_app(realtime_url: str, audio: str) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    fmt = {"type": "audio/pcm", "rate": 24000} if audio == "pcm16" else {"type": "audio/pcmu"}
    headers = {"Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "sk-floor")}

    @app.api_route("/incoming-call", methods=["GET", "POST"])
    async def incoming_call(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        url = f"ws://{request.headers.get('host', '127.0.0.1')}/media-stream"
        twiml = (
            f"<Response><Connect><Stream url={quoteattr(url)}>"
            f'<Parameter name="From" value={quoteattr(form.get("From", ""))}/>'
            "</Stream></Connect></Response>"
        )
        return Response(content=twiml, media_type="text/xml")

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.websocket("/media-stream")
    async def media_stream(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                start = orjson.loads(await ws.receive_text())
                if start.get("event") == "start":
                    break
        except WebSocketDisconnect:
            return
        sid = start["start"]["streamSid"]
        caller = start["start"].get("customParameters", {}).get("From", "")
        upstream = await websockets.connect(
            realtime_url, additional_headers=headers, **UPSTREAM_OPTIONS
        )
        session = {
            "type": "realtime",
            "instructions": f"You answer the phone. The caller's number is {caller}.",
            "audio": {"input": {"format": fmt}, "output": {"format": fmt, "voice": "alloy"}},
        }
        await upstream.send(orjson.dumps({"type": "session.update", "session": session}).decode())
        await upstream.send('{"type":"response.create"}')

        async def from_twilio() -> None:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                event = orjson.loads(message["text"])
                kind = event.get("event")
                if kind == "media":
                    await upstream.send(
                        '{"type":"input_audio_buffer.append","audio":"'
                        + event["media"]["payload"]
                        + '"}'
                    )
                elif kind == "stop":
                    return

        async def from_upstream() -> None:
            marks = 0
            media_head = '{"event":"media","streamSid":"' + sid + '","media":{"payload":"'
            mark_head = '{"event":"mark","streamSid":"' + sid + '","mark":{"name":"'
            async for raw in upstream:
                event = orjson.loads(raw)
                if event.get("type") == "response.output_audio.delta":
                    await ws.send_text(media_head + event["delta"] + '"}}')
                    marks += 1
                    await ws.send_text(mark_head + str(marks) + '"}}')

        tasks = [asyncio.create_task(from_twilio()), asyncio.create_task(from_upstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(upstream.close(), 1.0)
            with contextlib.suppress(Exception):
                await ws.close()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--cork", action="store_true", help="coalesce writes (_cork.py)")
    args = parser.parse_args()
    if args.cork:
        from _cork import install

        install()
    url = os.environ.get("REALTIME_URL", "ws://127.0.0.1:8765/v1/realtime")
    audio = os.environ.get("REALTIME_AUDIO", "pcm16").strip().lower()
    # The bridge's own uvicorn configuration, run as `voicebridge serve` runs it: `run()` lets
    # uvicorn pick its loop (uvloop when installed) and protocols (httptools, websockets-sansio).
    uvicorn.Server(uvicorn_config(create_app(url, audio), args.host, args.port)).run()


if __name__ == "__main__":
    main()
