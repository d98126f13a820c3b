"""Audio core: μ-law codec, 8 kHz ↔ 24 kHz streaming resamplers, 20 ms framer, facade.

Pure code with no I/O; every call runs it 50 times a second in each direction, so the per-frame
work (decode, resample, round, encode) is one call into a numba kernel per direction
(`bridge.audio._kernels`), compiled or loaded from its disk cache when this package is imported.
"""

from bridge.audio.framer import FRAME_BYTES, FRAME_MS, Framer
from bridge.audio.g711 import (
    ULAW_DECODE_TABLE,
    ULAW_ENCODE_TABLE,
    ULAW_SILENCE,
    ulaw_decode,
    ulaw_encode,
)
from bridge.audio.pipeline import AudioPipeline, Pcm16Pipeline, PcmuPipeline, make_pipeline
from bridge.audio.resample import Resampler8kTo24k, Resampler24kTo8k, design_lowpass

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "ULAW_DECODE_TABLE",
    "ULAW_ENCODE_TABLE",
    "ULAW_SILENCE",
    "AudioPipeline",
    "Framer",
    "Pcm16Pipeline",
    "PcmuPipeline",
    "Resampler8kTo24k",
    "Resampler24kTo8k",
    "design_lowpass",
    "make_pipeline",
    "ulaw_decode",
    "ulaw_encode",
]
