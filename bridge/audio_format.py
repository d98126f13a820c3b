"""The two audio formats a Realtime session can speak, as one type for every side.

`REALTIME_AUDIO` (settings), the session the bridge asks for (`bridge.realtime`), the audio
pipeline (`bridge.audio`) and the local engine (`bridge.engine`) all name the format with this
enum, so a format cannot be spelled differently in two places. It is a `StrEnum` whose values
are the settings values ("pcm16", "pcmu"): it compares equal to them and logs as them. Each
dialect spells it its own way on the wire ("pcm16"/"g711_ulaw", or a MIME-like object); that
translation stays in the dialects.

A module of its own at the top of the package, not in `bridge.audio`: importing that package
compiles (or loads) the numba kernels, seconds that `bridge.settings` must not pay.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["PCM16_RATE", "PCMU_RATE", "AudioFormat"]

PCM16_RATE: Final = 24_000
"""The Realtime protocol's PCM rate, and the only one it accepts."""
PCMU_RATE: Final = 8_000
"""G.711's rate: the telephone network's, and μ-law on the Realtime wire."""


class AudioFormat(enum.StrEnum):
    """A wire format of the Realtime protocol, named neutrally (dialects spell them differently)."""

    PCM16 = "pcm16"
    """Little-endian signed 16-bit PCM, mono, 24 kHz."""
    PCMU = "pcmu"
    """G.711 μ-law, mono, 8 kHz, one byte per sample."""

    @property
    def sample_rate(self) -> int:
        return PCM16_RATE if self is AudioFormat.PCM16 else PCMU_RATE

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self is AudioFormat.PCM16 else 1

    @property
    def bytes_per_ms(self) -> int:
        """Bytes of one millisecond: 48 for PCM16 at 24 kHz, 8 for μ-law at 8 kHz."""
        return self.sample_rate // 1000 * self.bytes_per_sample

    def duration_ms(self, n_bytes: int) -> float:
        """How long `n_bytes` of this format play, in milliseconds."""
        return n_bytes / self.bytes_per_ms
