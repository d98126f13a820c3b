"""Why a simulated call failed, with what the bridge actually answered."""

from __future__ import annotations


class SimError(Exception):
    """Base class for failures of a simulated call."""


class CallRejected(SimError):
    """The voice webhook did not answer with a usable `<Connect><Stream>`.

    Carries the HTTP status, the body and the top-level TwiML verbs (for instance
    ``("Say", "Hangup")`` for a busy answer) so a test can assert why.
    """

    def __init__(self, reason: str, *, status: int, body: str, verbs: tuple[str, ...] = ()) -> None:
        self.reason = reason
        self.status = status
        self.body = body
        self.verbs = verbs
        super().__init__(f"call rejected: {reason} (HTTP {status}); body: {body[:500]!r}")


class StreamRejected(SimError):
    """The bridge refused the WebSocket upgrade with an HTTP status instead of accepting it.

    Twilio's contract is to accept and then close with 1008 on a bad signature; a plain
    HTTP refusal (403 from closing before `accept`) surfaces here instead of as a close code.
    """

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"WebSocket upgrade refused with HTTP {status}; body: {body[:500]!r}")


class StreamClosed(SimError):
    """The stream closed before the awaited thing happened."""
