"""The one error type of the engine's protocol layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProtocolError(Exception):
    """A client event the service refuses; it becomes an ``error`` event and the session goes on.

    ``code`` and ``message`` follow what the hosted service sends for the same mistake, so a
    client's error handling can be tested against the engine.
    """

    code: str | None
    message: str
    param: str | None = None
    type: str = "invalid_request_error"

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
