"""The audio facade the call code uses: base64 in, base64 out, one object per call.

Twilio sends 8 kHz μ-law in 20 ms frames; the Realtime side speaks 24 kHz PCM16 (`pcm16`)
or the same μ-law (`pcmu`). Either way the call code sees one interface and never touches
samples, and what goes back to Twilio is always whole 20 ms frames.
"""

from __future__ import annotations

import binascii
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from bridge.audio.framer import Framer
from bridge.audio.g711 import ulaw_decode, ulaw_encode
from bridge.audio.resample import Resampler8kTo24k, Resampler24kTo8k

__all__ = ["AudioPipeline", "Pcm16Pipeline", "PcmuPipeline", "make_pipeline"]


@runtime_checkable
class AudioPipeline(Protocol):
    """Converts one call's audio between Twilio and the Realtime model, both as base64."""

    upstream_format: Literal["pcm16", "pcmu"]  # what the Realtime side speaks
    upstream_bytes_per_ms: int  # 48 for 24 kHz PCM16, 8 for μ-law

    def inbound(self, payload_b64: str) -> str:
        """Twilio media payload (b64 μ-law 8 kHz) -> b64 audio for input_audio_buffer.append."""
        ...

    def outbound(self, delta_b64: str) -> list[str]:
        """Realtime output audio delta (b64) -> complete 20 ms μ-law frames, each b64."""
        ...

    def flush(self) -> list[str]:
        """End of an assistant audio item: the rest of its audio, the last frame padded."""
        ...

    def reset_outbound(self) -> None:
        """Barge-in: drop outbound resampler state and framer remainder."""
        ...


def _b64decode(text: str, what: str) -> bytes:
    # strict_mode rejects stray characters instead of silently skipping them, so a corrupt
    # payload fails loudly here rather than as a click in someone's ear.
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except ValueError as exc:  # binascii.Error, or a non-ASCII str
        raise ValueError(f"{what} is not valid base64: {exc}") from exc


def _b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


class Pcm16Pipeline:
    """μ-law 8 kHz ↔ PCM16 24 kHz with stateful resamplers (REALTIME_AUDIO=pcm16)."""

    upstream_format: Literal["pcm16", "pcmu"] = "pcm16"
    upstream_bytes_per_ms: int = 48

    def __init__(self) -> None:
        self._up = Resampler8kTo24k()
        self._down = Resampler24kTo8k()
        self._framer = Framer()

    def inbound(self, payload_b64: str) -> str:
        """Twilio μ-law -> 24 kHz PCM16; caller audio is one continuous signal, never reset."""
        pcm8k = ulaw_decode(_b64decode(payload_b64, "Twilio media payload"))
        pcm24k = self._up.process(pcm8k)
        return _b64encode(pcm24k.astype("<i2", copy=False).tobytes())

    def outbound(self, delta_b64: str) -> list[str]:
        """24 kHz PCM16 delta (any size, odd bytes too) -> whole 20 ms μ-law frames."""
        pcm24k = _b64decode(delta_b64, "Realtime audio delta")
        pcm8k = np.frombuffer(self._down.process_bytes(pcm24k), dtype="<i2")
        return [_b64encode(frame) for frame in self._framer.push(ulaw_encode(pcm8k))]

    def flush(self) -> list[str]:
        """Drain the filter so the item's last ~1.3 ms is heard, then pad the last frame.

        The drained tail (22–23 samples at 8 kHz, about 2.8 ms, ringing out to silence) makes the
        item's played audio slightly longer than the model's; the filter then starts the
        next item from silence, as a fresh call would.
        """
        frames = self._framer.push(ulaw_encode(self._down.drain()))
        frames += self._framer.flush()
        return [_b64encode(frame) for frame in frames]

    def reset_outbound(self) -> None:
        """Barge-in: nothing of the interrupted item may leak into the next one."""
        self._down.reset()
        self._framer.reset()


class PcmuPipeline:
    """μ-law straight through (REALTIME_AUDIO=pcmu); outbound is still cut into 20 ms frames."""

    upstream_format: Literal["pcm16", "pcmu"] = "pcmu"
    upstream_bytes_per_ms: int = 8

    def __init__(self) -> None:
        self._framer = Framer()

    def inbound(self, payload_b64: str) -> str:
        """Validated, then passed on unchanged: both sides speak 8 kHz μ-law."""
        _b64decode(payload_b64, "Twilio media payload")
        return payload_b64

    def outbound(self, delta_b64: str) -> list[str]:
        """μ-law delta (any size) -> whole 160-byte frames, the remainder kept."""
        ulaw = _b64decode(delta_b64, "Realtime audio delta")
        return [_b64encode(frame) for frame in self._framer.push(ulaw)]

    def flush(self) -> list[str]:
        """The last partial frame padded with μ-law silence, or []."""
        return [_b64encode(frame) for frame in self._framer.flush()]

    def reset_outbound(self) -> None:
        """Barge-in: drop the framer remainder."""
        self._framer.reset()


def make_pipeline(upstream_format: str) -> AudioPipeline:
    """The pipeline for REALTIME_AUDIO: "pcm16" or "pcmu"."""
    if upstream_format == "pcm16":
        return Pcm16Pipeline()
    if upstream_format == "pcmu":
        return PcmuPipeline()
    raise ValueError(f"unknown upstream audio format {upstream_format!r}; use 'pcm16' or 'pcmu'")
