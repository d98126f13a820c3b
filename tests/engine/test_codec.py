"""The engine's wire formats: exact lengths, and caller audio independent of chunking.

(μ-law's bit-exactness and the resamplers' quality are the audio core's, tested there.)
"""

from __future__ import annotations

import numpy as np
import pytest

from bridge.audio import ulaw_encode
from bridge.audio_format import AudioFormat
from bridge.engine.codec import InputDecoder, encode_output, pcm16_encode
from bridge.engine.voice import tone


def test_mulaw_input_decodes_to_three_samples_per_byte_whatever_the_chunking() -> None:
    wire = ulaw_encode(tone(500, sample_rate=8000))
    whole = InputDecoder(AudioFormat.PCMU).decode(wire)
    decoder = InputDecoder(AudioFormat.PCMU)
    pieces = np.concatenate([decoder.decode(wire[i : i + 37]) for i in range(0, len(wire), 37)])
    assert len(whole) == 3 * len(wire) == 500 * 24
    assert np.array_equal(whole, pieces)


def test_pcm16_decoder_keeps_an_odd_byte_for_the_next_chunk() -> None:
    pcm = tone(10)
    data = pcm16_encode(pcm)
    decoder = InputDecoder(AudioFormat.PCM16)
    out = np.concatenate([decoder.decode(data[:101]), decoder.decode(data[101:])])
    assert np.array_equal(out, pcm)


@pytest.mark.parametrize(
    ("fmt", "size"), [(AudioFormat.PCM16, 1234 * 48), (AudioFormat.PCMU, 1234 * 8)]
)
def test_output_encoding_gives_exact_lengths(fmt: AudioFormat, size: int) -> None:
    encoded = encode_output(tone(1234), fmt)
    assert len(encoded) == size
    assert fmt.duration_ms(len(encoded)) == 1234
