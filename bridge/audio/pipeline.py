"""The audio facade the call code uses: base64 in, base64 out, one object per call.

Twilio sends 8 kHz μ-law in 20 ms frames; the Realtime side speaks 24 kHz PCM16 (`pcm16`)
or the same μ-law (`pcmu`). Either way the call code sees one interface and never touches
samples, and what goes back to Twilio is always whole 20 ms frames.

In pcm16, per frame and direction this is one compiled kernel call (base64 decode, μ-law
decode or encode, resample, round, and inbound the base64 encode: see `bridge.audio._kernels`)
working in the thread's buffers (`bridge.audio.workspace`), plus a binascii encode per
160-byte frame out; a call keeps only its filter state and framer, and the base64 text is the
only new object. Text that is not canonical base64 goes through binascii instead, so
acceptance and errors are binascii's strict mode either way.
"""

from __future__ import annotations

import binascii
import codecs
import sys
from typing import Protocol, runtime_checkable

from bridge.audio._kernels import ODD_FLAG
from bridge.audio.framer import FRAME_BYTES, Framer
from bridge.audio.resample import KERNELS, Resampler8kTo24k, Resampler24kTo8k
from bridge.audio.workspace import PER_THREAD
from bridge.audio_format import AudioFormat

__all__ = ["AudioPipeline", "Pcm16Pipeline", "PcmuPipeline", "make_pipeline"]


@runtime_checkable
class AudioPipeline(Protocol):
    """Converts one call's audio between Twilio and the Realtime model, both as base64."""

    upstream_format: AudioFormat  # what the Realtime side speaks
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


_a2b = binascii.a2b_base64
_b2a = binascii.b2a_base64
_ascii = codecs.ascii_decode
_upsample = KERNELS.upsample
_downsample = KERNELS.downsample
_upsample_b64 = KERNELS.upsample_b64
_downsample_b64 = KERNELS.downsample_b64
_LITTLE_ENDIAN = sys.byteorder == "little"
#: The base64 digits worth a multiple of 16 (4 low bits zero). 160 bytes = 3 × 53 + 1, so
#: their text ends in a digit carrying the last byte's 2 low bits, then 4 padding bits, then
#: "=="; strict decoding ignores those 4 bits, canonical encoding (b2a_base64) zeroes them.
_CANONICAL_LAST_DIGITS = "AQgw"
assert FRAME_BYTES % 3 == 1, "the pass-through check below assumes 160 bytes end in '=='"


def _b64decode(text: str, what: str) -> bytes:
    # strict_mode rejects stray characters instead of silently skipping them, so a corrupt
    # payload fails loudly here rather than as a click in someone's ear.
    try:
        return _a2b(text, strict_mode=True)
    except ValueError as exc:  # binascii.Error, or a non-ASCII str
        raise _not_base64(what, exc) from exc


def _not_base64(what: str, exc: ValueError) -> ValueError:
    return ValueError(f"{what} is not valid base64: {exc}")


def _b64encode(data: bytes | memoryview) -> str:
    return _b2a(data, newline=False).decode("ascii")


class Pcm16Pipeline:
    """μ-law 8 kHz ↔ PCM16 24 kHz with stateful resamplers (REALTIME_AUDIO=pcm16)."""

    upstream_format: AudioFormat = AudioFormat.PCM16
    upstream_bytes_per_ms: int = AudioFormat.PCM16.bytes_per_ms  # 48

    def __init__(self) -> None:
        self._up = Resampler8kTo24k()
        self._down = Resampler24kTo8k()
        self._framer = Framer()

    def inbound(self, payload_b64: str) -> str:
        """Twilio μ-law -> 24 kHz PCM16; caller audio is one continuous signal, never reset.

        One kernel call decodes the base64, resamples and encodes the result; text that is
        not canonical base64 (or not ASCII) takes the binascii path, which decodes what
        strict base64 allows and names the error otherwise.
        """
        try:
            text = payload_b64.encode("ascii")
        except UnicodeEncodeError:
            return self._inbound_binascii(payload_b64)
        space = PER_THREAD.workspace
        if len(text) > space.inbound_chars:
            space.grow_inbound(len(text) // 4 * 3 + 3)
        up = self._up
        chars = _upsample_b64(text, up._h, space.up_window, up._istate, space.pcm24k, space.work)
        if chars < 0:
            return self._inbound_binascii(payload_b64)
        return _ascii(space.work_view[:chars])[0]

    def _inbound_binascii(self, payload_b64: str) -> str:
        ulaw = _b64decode(payload_b64, "Twilio media payload")
        space = PER_THREAD.workspace
        if 3 * len(ulaw) > len(space.pcm24k):
            space.grow_inbound(len(ulaw))
        pcm = space.pcm24k
        up = self._up
        count = _upsample(ulaw, True, up._h, space.up_window, up._istate, pcm)
        if _LITTLE_ENDIAN:  # the buffer's bytes are already the wire's little-endian PCM16
            return _b2a(space.pcm24k_bytes[: 2 * count], newline=False).decode("ascii")
        return _b64encode(pcm[:count].astype("<i2").tobytes())

    def outbound(self, delta_b64: str) -> list[str]:
        """24 kHz PCM16 delta (any size, odd bytes too) -> whole 20 ms μ-law frames.

        Decoding, resampling and μ-law encoding are one kernel call, writing straight into
        the framer's buffer; non-canonical base64 takes the binascii path, as inbound.
        """
        try:
            text = delta_b64.encode("ascii")
        except UnicodeEncodeError:
            return self._outbound_binascii(delta_b64)
        space = PER_THREAD.workspace
        if len(text) > space.outbound_chars:
            space.grow_outbound(len(text))
        down = self._down
        fed = down._fed
        odd = fed or down._istate[ODD_FLAG]  # only needed while nothing was fed
        framer = self._framer
        # At most (2 pending + (bytes + 1 odd) / 2) / 3 codes, which is <= bytes // 6 + 1.
        buffer = framer.reserve(len(text) // 8 + 1)
        written = _downsample_b64(
            text, down._h, space.down_window, down._istate, space.pcm_work, buffer, framer.pending
        )
        if written < 0:
            return self._outbound_binascii(delta_b64)
        if not fed:
            decoded = len(text) // 4 * 3 - text[-2:].count(b"=")
            down._fed = decoded > 1 or (decoded == 1 and bool(odd))
        return framer.commit_b64(written)

    def _outbound_binascii(self, delta_b64: str) -> list[str]:
        pcm = _b64decode(delta_b64, "Realtime audio delta")
        down = self._down
        if not down._fed:
            down._note_input(pcm)
        framer = self._framer
        buffer = framer.reserve(len(pcm) // 6 + 1)
        window = PER_THREAD.workspace.down_window
        written = _downsample(pcm, down._h, window, down._istate, True, buffer, framer.pending)
        return framer.commit_b64(written)

    def flush(self) -> list[str]:
        """Drain the filter so the item's last ~1.3 ms is heard, then pad the last frame.

        The drained tail (22–23 samples at 8 kHz, about 2.8 ms, ringing out to silence) makes the
        item's played audio slightly longer than the model's; the filter then starts the
        next item from silence, as a fresh call would.
        """
        down, framer = self._down, self._framer
        frames: list[str] = []
        if down._fed:
            zeros = down._drain_bytes()
            buffer = framer.reserve(len(zeros) // 6 + 1)
            window, pending = PER_THREAD.workspace.down_window, framer.pending
            written = _downsample(zeros, down._h, window, down._istate, True, buffer, pending)
            frames = framer.commit_b64(written)
        down.reset()
        return frames + framer.flush_b64()

    def reset_outbound(self) -> None:
        """Barge-in: nothing of the interrupted item may leak into the next one."""
        self._down.reset()
        self._framer.reset()


class PcmuPipeline:
    """μ-law straight through (REALTIME_AUDIO=pcmu); outbound is still cut into 20 ms frames."""

    upstream_format: AudioFormat = AudioFormat.PCMU
    upstream_bytes_per_ms: int = AudioFormat.PCMU.bytes_per_ms  # 8

    def __init__(self) -> None:
        self._framer = Framer()

    def inbound(self, payload_b64: str) -> str:
        """Validated, then passed on unchanged: both sides speak 8 kHz μ-law."""
        try:  # `_b64decode`, inline: this runs for every frame
            _a2b(payload_b64, strict_mode=True)
        except ValueError as exc:
            raise _not_base64("Twilio media payload", exc) from exc
        return payload_b64

    def outbound(self, delta_b64: str) -> list[str]:
        """μ-law delta (any size) -> whole 160-byte frames, the remainder kept.

        A delta of exactly one frame with nothing pending goes out as the very text that came
        in, if that text is canonical (strict decoding plus its last digit prove it), as
        re-encoding would only reproduce it. Otherwise frames are encoded straight from the
        decoded bytes, and only a remainder is copied.
        """
        try:  # `_b64decode`, inline: this runs for every delta
            ulaw = _a2b(delta_b64, strict_mode=True)
        except ValueError as exc:
            raise _not_base64("Realtime audio delta", exc) from exc
        framer = self._framer
        if (
            len(ulaw) == FRAME_BYTES
            and not framer.pending
            and delta_b64[-3] in _CANONICAL_LAST_DIGITS
        ):
            return [delta_b64]
        return framer.push_b64(ulaw)

    def flush(self) -> list[str]:
        """The last partial frame padded with μ-law silence, or []."""
        return self._framer.flush_b64()

    def reset_outbound(self) -> None:
        """Barge-in: drop the framer remainder."""
        self._framer.reset()


def make_pipeline(upstream_format: AudioFormat | str) -> AudioPipeline:
    """The pipeline for REALTIME_AUDIO: "pcm16" or "pcmu"."""
    if upstream_format == AudioFormat.PCM16:
        return Pcm16Pipeline()
    if upstream_format == AudioFormat.PCMU:
        return PcmuPipeline()
    raise ValueError(f"unknown upstream audio format {upstream_format!r}; use 'pcm16' or 'pcmu'")
