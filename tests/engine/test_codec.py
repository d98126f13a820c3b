"""Audio conversions: G.711 μ-law is bit-exact, rate conversion keeps exact sample counts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bridge.engine.codec import (
    AudioFormat,
    InputDecoder,
    Upsampler,
    encode_output,
    pcm16_encode,
    ulaw_decode,
    ulaw_encode,
)
from bridge.engine.voice import tone


def test_ulaw_matches_the_g711_reference_on_every_input() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    every_sample = np.arange(-32768, 32768, dtype=np.int16)
    assert ulaw_encode(every_sample) == audioop.lin2ulaw(every_sample.tobytes(), 2)
    every_code = bytes(range(256))
    assert ulaw_decode(every_code).tobytes() == audioop.ulaw2lin(every_code, 2)


def test_ulaw_round_trip_is_stable() -> None:
    codes = bytes(range(256))
    assert ulaw_encode(ulaw_decode(codes)) == codes.replace(b"\x7f", b"\xff")


def test_upsampler_output_does_not_depend_on_chunking() -> None:
    pcm8k = tone(500, sample_rate=8000)
    whole = Upsampler().process(pcm8k)
    upsampler = Upsampler()
    pieces = np.concatenate([upsampler.process(pcm8k[i : i + 37]) for i in range(0, 4000, 37)])
    assert len(whole) == 3 * len(pcm8k) == 12000
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
