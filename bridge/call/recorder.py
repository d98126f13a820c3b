"""What the call core tells a recording about the call's audio, as it happens.

The core knows the facts a faithful recording needs, and nothing else does: each caller
frame with the time it arrived (and Twilio's timestamp of it), each agent frame with the
mark sent after it, each mark Twilio echoed as played, and each `clear` that dropped the
frames still queued. A recorder (`bridge.recording.Recorder`) places them on the call's
timeline; the core only calls it when one was given, so a call without one pays an
attribute test per frame.
"""

from __future__ import annotations

from typing import Protocol


class CallRecorder(Protocol):
    """Receives the call's audio facts from the call core (`Call(recorder=...)`), on the
    event loop, inside the frame's handling: it must only buffer, never block."""

    def caller(self, payload_b64: str, now: float, timestamp: object = None) -> None:
        """A caller frame (base64 μ-law, 20 ms) arrived from Twilio at `now`; `timestamp`
        is the message's own (ms from the stream's start, as sent: unchecked)."""
        ...

    def agent_sent(self, mark: str, payload_b64: str) -> None:
        """An agent frame (base64 μ-law) was sent to Twilio, followed by the mark `mark`."""
        ...

    def agent_played(self, mark: str, now: float) -> None:
        """Twilio echoed `mark` at `now` as played: its frame (and any frame sent before it
        not yet confirmed) has finished playing to the caller."""
        ...

    def agent_cleared(self) -> None:
        """A barge-in's `clear`: every frame sent and not yet confirmed was never heard."""
        ...
