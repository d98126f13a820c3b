"""Speech recognition of committed caller turns (the service's input transcription)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from bridge.engine.codec import Pcm


class Transcriber(Protocol):
    def transcribe(self, audio: Pcm, *, item_id: str) -> str | Awaitable[str]:
        """Text of one committed user turn (PCM16 24 kHz); may be a coroutine."""
        ...


class SilentTranscriber:
    """Hears nothing: every turn transcribes to the empty string. A stand-in until ASR exists."""

    def transcribe(self, audio: Pcm, *, item_id: str) -> str:
        return ""
