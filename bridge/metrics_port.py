"""`/metrics` on an address of its own (`METRICS_PORT`, `METRICS_HOST`), off the public port.

The public port faces Twilio and so the internet; what the metrics tell (call volume, error
codes, the loop's saturation) is for the operator's Prometheus only. With `METRICS_PORT` set,
the public app answers `/metrics` 404 and a second listener in the same event loop serves
it, under the same edge limits (`bridge.edge`). The listener lives as long as the app's
lifespan: it opens once the app has started (a port that cannot be bound fails the start,
naming the setting) and closes when the app shuts down. In a worker of `serve --workers N`
every worker binds it with `SO_REUSEPORT`, and whichever answers reports the whole group
(`bridge.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from bridge import metrics
from bridge.edge import KEEPALIVE_IDLE_TIMEOUT_S, edge_protocol
from bridge.logs import get_logger
from bridge.settings import Settings

log = get_logger("voicebridge.metrics")

METRICS_PATH = "/metrics"


def metrics_address(settings: Settings | None, public_host: str) -> tuple[str, int] | None:
    """Where `/metrics` is served apart, or None to keep it on the public port.
    `METRICS_HOST` defaults to the public port's own bind address."""
    if settings is None or settings.METRICS_PORT is None:
        return None
    return settings.METRICS_HOST or public_host, settings.METRICS_PORT


async def metrics_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The metrics listener's whole app: `GET /metrics`, and 404 for anything else."""
    if scope["type"] != "http":
        return
    response: Response
    if scope["path"] == METRICS_PATH and scope["method"] in ("GET", "HEAD"):
        body, content_type = await metrics.render_off_loop()
        response = Response(content=body, media_type=content_type)
    else:
        response = PlainTextResponse("not found", status_code=404)
    await response(scope, receive, send)


class MetricsListener:
    """`metrics_app` on its own socket, through the guarded HTTP protocol."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._state = ServerState()

    async def start(self) -> None:
        config = Config(
            metrics_app,
            host=self.host,
            port=self.port,
            http=edge_protocol(),  # type: ignore[arg-type]
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=KEEPALIVE_IDLE_TIMEOUT_S,  # type: ignore[arg-type]
        )
        config.load()
        loop = asyncio.get_running_loop()
        state = self._state

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state={}, _loop=loop
            )

        self._server = await loop.create_server(
            protocol, self.host, self.port, reuse_port=metrics.multiprocess_dir() is not None
        )
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("metrics_listening", host=self.host, port=self.port, path=METRICS_PATH)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._state.connections):
            connection.shutdown()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)


class MetricsApart:
    """The public app without `/metrics`, with the metrics listener tied to its lifespan."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.app = app
        self.listener = MetricsListener(host, port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == METRICS_PATH:
            await PlainTextResponse("not found", status_code=404)(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        else:
            await self.app(scope, receive, send)

    def _lifespan_send(self, send: Send) -> Send:
        listener = self.listener

        async def lifespan_send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                try:
                    await listener.start()
                except OSError as exc:
                    message = {
                        "type": "lifespan.startup.failed",
                        "message": f"METRICS_PORT={listener.port}: cannot listen on "
                        f"{listener.host}:{listener.port}: {exc.strerror or exc}",
                    }
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await listener.close()
            await send(message)

        return lifespan_send


def metrics_apart(app: ASGIApp, settings: Settings | None, public_host: str) -> ASGIApp:
    """`app` as the public port serves it: unchanged, or without `/metrics` when
    `METRICS_PORT` moves it to its own listener."""
    address = metrics_address(settings, public_host)
    return app if address is None else MetricsApart(app, *address)
