"""What-if experiment: one socket write per loop iteration instead of one per message.

uvicorn's WebSocket protocol and the `websockets` client call `transport.write` once per
message, and each write of a small message is a system call (on loopback it also pays for the
receiving side's TCP work). A relay sends several messages in a row (a frame and its mark;
appends for a burst of Twilio messages), so coalescing every write of one loop iteration
into one `transport.write` saves calls without delaying anything past the current iteration.

`install()` wraps the transports of both libraries in `CorkedTransport`; `bench/load.py
--cork` runs the bridge (through `_bridge.py`) and the floor so, to measure what a change of
this kind inside the bridge would buy. Nothing in `bridge/` uses it.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CorkedTransport:
    """Buffers `write`s and flushes them together at the next turn of the loop."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def install() -> None:
    """Cork uvicorn's websockets-sansio server connections and `websockets` client ones."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.asyncio.connection import Connection

    server_made = WebSocketsSansIOProtocol.connection_made
    client_made = Connection.connection_made

    def server_connection_made(self: Any, transport: Any) -> None:
        server_made(self, CorkedTransport(transport))

    def client_connection_made(self: Any, transport: Any) -> None:
        client_made(self, CorkedTransport(transport))

    WebSocketsSansIOProtocol.connection_made = server_connection_made  # type: ignore[method-assign]
    Connection.connection_made = client_connection_made  # type: ignore[method-assign]
