"""The uvicorn server with a graceful drain.

On SIGTERM (or SIGINT) Kubernetes expects a pod to stop taking work and finish what it has.
uvicorn's own shutdown would close every live WebSocket at once, which for us means hanging
up on callers. So the first signal only starts a drain: `/readyz` turns 503, the webhook
answers new calls with the busy TwiML, live calls continue until they end or
`DRAIN_TIMEOUT_SECONDS` passes, and only then does uvicorn shut down (exit status 0).
A second SIGINT still forces an immediate exit.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp

from bridge import edge
from bridge.logs import get_logger
from bridge.metrics_port import metrics_apart
from bridge.ws import TwilioSocket, uvicorn_ws_protocol

if TYPE_CHECKING:
    from bridge.calls import CallRegistry

log = get_logger("voicebridge.server")


def uvicorn_config(
    app: ASGIApp,
    host: str,
    port: int,
    on_stream: Callable[[TwilioSocket], None] | None = None,
    batch_writes: bool = True,
) -> uvicorn.Config:
    """How the bridge is served, in production, tests and benchmarks alike.

    HTTP routes are FastAPI on uvicorn (httptools, uvloop). WebSocket upgrades are handed to
    picows (`bridge.ws.uvicorn_ws_protocol`); each media stream goes to `on_stream`, by default
    the app's (`app.state.on_stream`). `batch_writes`: see `bridge.ws.LoopWrites`. No access
    log (a line per call and per health probe), our logging. Every connection passes the
    edge's limits (`bridge.edge`: header size, count and time, unauthenticated connections)
    until its headers are read; with `METRICS_PORT` set, `/metrics` moves to its own
    listener (`bridge.metrics_port`).
    """
    services = getattr(getattr(app, "state", None), "services", None)
    if on_stream is None:
        on_stream = app.state.on_stream  # type: ignore[attr-defined]
    return uvicorn.Config(
        metrics_apart(app, services.settings if services is not None else None, host),
        host=host,
        port=port,
        http=edge.edge_protocol(),  # type: ignore[arg-type]
        timeout_keep_alive=edge.KEEPALIVE_IDLE_TIMEOUT_S,  # type: ignore[arg-type]
        ws=uvicorn_ws_protocol(on_stream, batch_writes=batch_writes),  # type: ignore[arg-type]
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, calls: CallRegistry, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.calls = calls
        self.drain_timeout_s = drain_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or self._loop is None:
            # Second signal (or no loop yet): uvicorn's own handling, which forces on SIGINT.
            super().handle_exit(sig, frame)
            return
        self._loop.call_soon_threadsafe(self._start_drain, signal.Signals(sig).name)

    def _start_drain(self, signame: str) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self.drain(signame))

    async def drain(self, reason: str = "shutdown") -> None:
        """Stop accepting calls, wait for live ones (up to the timeout), then shut down."""
        calls = self.calls
        log.info(
            "drain_started",
            signal=reason,
            active_calls=calls.active_calls,
            timeout_s=self.drain_timeout_s,
        )
        remaining = await calls.drain(self.drain_timeout_s)
        log.info("drain_finished", active_calls=remaining, timed_out=remaining > 0)
        self.should_exit = True


def listen_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on `host:port`, as uvicorn would bind it (SO_REUSEADDR, so a
    restart does not wait for TIME_WAIT), inheritable by a worker. `reuse_port`: one of
    several on the same address (`serve --workers N`). Raises OSError (address in use, no
    such address)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
