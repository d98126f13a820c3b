"""The least WebSocket (RFC 6455) a load generator needs: frames in, frames out, no asyncio.

The bench's own processes (the fake callers and the fake Realtime server) must cost as little
CPU as possible, because they share the machine's two cores with the bridge they measure.
A full client or server library spends more per message than the bridge itself, so this
module does only what the load needs: the upgrade handshake, unfragmented or fragmented text
frames, ping/pong and close. Client frames carry the all-zero masking key, which the RFC
allows (any key is valid) and which makes masking a no-op on our side; the peer still runs its
usual unmasking, so the bridge's cost is the same as with a random key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

from websockets.speedups import apply_mask

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameReader",
    "HandshakeError",
    "accept_key",
    "client_frame",
    "client_handshake",
    "parse_handshake",
    "server_frame",
    "server_handshake_response",
]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_ZERO_MASK = b"\x00\x00\x00\x00"
MAX_HEADER_BYTES = 16 * 1024


class HandshakeError(Exception):
    """The HTTP upgrade did not succeed."""


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _header(opcode: int, length: int, masked: bool) -> bytes:
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, mask_bit | length)
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, length)


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A masked (with the zero key, so the payload goes as is) final frame."""
    return _header(opcode, len(payload), True) + _ZERO_MASK + payload


def server_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """An unmasked final frame, as servers send."""
    return _header(opcode, len(payload), False) + payload


def client_handshake(host: str, path: str, user_agent: str = "bench") -> tuple[bytes, bytes]:
    """The upgrade request and the `Sec-WebSocket-Accept` value the answer must carry."""
    key = base64.b64encode(os.urandom(16))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
        f"User-Agent: {user_agent}\r\n\r\n"
    ).encode()
    return request, accept_key(key)


def parse_handshake(buffer: bytearray) -> tuple[str, dict[str, str]] | None:
    """(start line, lower-cased headers) once `buffer` holds a whole head, which is removed
    from it; None while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEADER_BYTES:
            raise HandshakeError("HTTP head too large")
        return None
    head = bytes(buffer[:end]).decode("latin-1")
    del buffer[: end + 4]
    first, *lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return first, headers


def server_handshake_response(headers: dict[str, str]) -> bytes:
    key = headers.get("sec-websocket-key")
    if not key or "websocket" not in headers.get("upgrade", "").lower():
        raise HandshakeError("not a WebSocket upgrade")
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key.encode()) + b"\r\n\r\n"
    )


class FrameReader:
    """Bytes in, whole messages out as (opcode, payload); masked frames are unmasked."""

    __slots__ = ("_buf", "_frag_op", "_frags")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._frags: list[bytes] = []
        self._frag_op = 0

    def feed(self, data: bytes | bytearray) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            masked = b1 & 0x80
            if masked:
                head += 4
            end = pos + head + length
            if end > size:
                break
            payload = bytes(buf[pos + head : end])
            if masked:
                payload = apply_mask(payload, bytes(buf[pos + head - 4 : pos + head]))
            pos = end
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode >= 0x8:  # control frames are never fragmented
                out.append((opcode, payload))
            elif opcode == OP_CONT:
                self._frags.append(payload)
                if fin:
                    out.append((self._frag_op, b"".join(self._frags)))
                    self._frags = []
            elif fin:
                out.append((opcode, payload))
            else:
                self._frag_op = opcode
                self._frags = [payload]
        if pos:
            del buf[:pos]
        return out
