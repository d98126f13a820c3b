"""The floor: the smallest relay between Twilio and a Realtime model on the bridge's own stack.

What any Python bridge must spend, and nothing more: FastAPI on uvicorn configured and started
exactly as `voicebridge serve` does (`bridge.server.uvicorn_config`; `Server.run()`, so uvicorn
picks uvloop and httptools), WebSocket upgrades handed to picows through the same
`bridge.ws.uvicorn_ws_protocol`, the upstream opened with the same `bridge.ws.open_upstream`
options, messages delivered as callbacks as the bridge gets them, orjson for parsing. Per call:
on `start`, open the upstream, send a `session.update` (whose instructions name the caller,
as the bridge's do) and one `response.create`. Then each Twilio message is parsed, and each
`media` becomes one `input_audio_buffer.append` with the same payload; each upstream message
is parsed, and each audio delta becomes one Twilio `media` with the same payload followed by
a `mark`, both in one write (a relay that supports barge-in needs marks to know what was
heard; Twilio's own sample sends one per delta). No conversion, no framing, no logic: in
pcm16 mode the 24 kHz PCM goes to the caller as it came, which a real phone could not play
but which costs what the floor should cost.

One option differs: the floor writes each message at once (`batch_writes=False`), where the
bridge writes at the end of the loop's pass (`bridge.ws.LoopWrites`). The floor's handlers
are so short that its writes already leave close together; batching them cost it 0.03-0.3 ms
more CPU per call-second in alternating runs at 100 calls, so the floor takes the cheaper way.

`bench/load.py` runs it under the same load as the bridge and reports bridge/floor CPU.
Run by hand: `REALTIME_URL=ws://127.0.0.1:9000/v1/realtime .venv/bin/python bench/floor.py
--port 8090`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable
from urllib.parse import parse_qsl
from xml.sax.saxutils import quoteattr

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from bridge import twilio_stream as tw
from bridge.realtime.upstream import (
    CONNECT_TIMEOUT_S,
    UPSTREAM_MAX_MESSAGE_BYTES,
    UPSTREAM_SOCKET_SNDBUF,
)
from bridge.server import uvicorn_config
from bridge.ws import TwilioSocket, UpstreamSocket, open_upstream


class FloorCall:
    """One relayed call: Twilio text in → one append up; delta in → media + mark down."""

    def __init__(self, twilio: TwilioSocket, realtime_url: str, audio: str) -> None:
        self.twilio = twilio
        self.url = realtime_url
        self.audio = audio
        self.upstream: UpstreamSocket | None = None
        self.media_head = ""
        self.mark_head = ""
        self.marks = 0
        self.backlog: list[str] = []  # appends from before the upstream opened
        self.task: asyncio.Task[None] | None = None
        twilio.attach(self.on_twilio, lambda _reason: None, self.on_twilio_closed)

    def on_twilio(self, text: str) -> None:
        event = orjson.loads(text)
        kind = event.get("event")
        if kind == "media":
            append = (
                '{"type":"input_audio_buffer.append","audio":"' + event["media"]["payload"] + '"}'
            )
            if self.upstream is not None:
                self.upstream.send(append)
            else:
                self.backlog.append(append)
        elif kind == "start":
            self.task = asyncio.create_task(self.open(event["start"]))
        elif kind == "stop":
            self.twilio.send_close(1000)

    def on_upstream(self, text: str) -> None:
        event = orjson.loads(text)
        if event.get("type") == "response.output_audio.delta":
            self.marks += 1
            self.twilio.send_batch(
                (
                    self.media_head + event["delta"] + '"}}',
                    self.mark_head + str(self.marks) + '"}}',
                )
            )

    def name_stream(self, sid: str) -> None:
        """The heads of every media and mark sent back (the bridge's own builders)."""
        self.media_head = tw.media_head(sid)
        self.mark_head = tw.mark_head(sid)

    def on_twilio_closed(self) -> None:
        if self.upstream is not None:
            self.upstream.send_close(1000)
            self.upstream.detach()
        elif self.task is not None:
            self.task.cancel()

    async def open(self, start: dict) -> None:
        sid = start["streamSid"]
        caller = start.get("customParameters", {}).get("From", "")
        self.name_stream(sid)
        fmt = (
            {"type": "audio/pcm", "rate": 24000}
            if self.audio == "pcm16"
            else {"type": "audio/pcmu"}
        )
        upstream = await open_upstream(
            self.url,
            {"Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "sk-floor")},
            max_message_bytes=UPSTREAM_MAX_MESSAGE_BYTES,
            timeout_s=CONNECT_TIMEOUT_S,
            send_buffer_bytes=UPSTREAM_SOCKET_SNDBUF,
            batch_writes=False,
        )
        session = {
            "type": "realtime",
            "instructions": f"You answer the phone. The caller's number is {caller}.",
            "audio": {"input": {"format": fmt}, "output": {"format": fmt, "voice": "alloy"}},
        }
        upstream.send(orjson.dumps({"type": "session.update", "session": session}).decode())
        upstream.send('{"type":"response.create"}')
        for append in self.backlog:
            upstream.send(append)
        self.backlog.clear()
        upstream.attach(self.on_upstream, lambda _reason: None, lambda: None)
        self.upstream = upstream
        if not self.twilio.open:
            await upstream.close()


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

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

    return app


def streams(realtime_url: str, audio: str) -> Callable[[TwilioSocket], None]:
    calls: set[FloorCall] = set()

    def connected(ws: TwilioSocket) -> None:
        call = FloorCall(ws, realtime_url, audio)
        calls.add(call)
        ws.closed.add_done_callback(lambda _: calls.discard(call))

    return connected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    url = os.environ.get("REALTIME_URL", "ws://127.0.0.1:8765/v1/realtime")
    audio = os.environ.get("REALTIME_AUDIO", "pcm16").strip().lower()
    config = uvicorn_config(
        create_app(), args.host, args.port, on_stream=streams(url, audio), batch_writes=False
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
