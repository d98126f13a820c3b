"""The loopback HTTP server under the REST fakes (`FakeTavily`, `FakeTwilioRest`).

A subclass is a dataclass with its own fields; this base adds the server lifecycle
(``start()`` / ``stop()``, a context manager, ``port`` / ``url``) and hands each request to
``_handle(handler)`` in the server's thread. ``_released`` is set on ``stop()``, so an answer
held back with ``self._released.wait(delay)`` goes out at once when the test ends.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class ThreadedHttpFake:
    """Serves ``_methods`` (others answer 501) on ``127.0.0.1``, an ephemeral port, in a
    daemon thread named ``_thread_name``."""

    _thread_name: ClassVar[str] = "fake-http"
    _methods: ClassVar[tuple[str, ...]] = ("POST",)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._released = threading.Event()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

        def serve(handler: BaseHTTPRequestHandler) -> None:
            fake._handle(handler)

        for method in self._methods:
            setattr(Handler, f"do_{method}", serve)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=self._thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()  # a held-back answer goes out now (to a client long gone)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one request (runs in the server's thread)."""
        raise NotImplementedError


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body (``Content-Length`` bytes; none without the header)."""
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
    """Answer ``status`` with ``payload`` as a JSON body."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
