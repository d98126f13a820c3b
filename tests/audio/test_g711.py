"""μ-law must be bit-exact with G.711: every PCM16 input, every code."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest

import bridge.audio
from bridge.audio import ULAW_DECODE_TABLE, ULAW_ENCODE_TABLE, ulaw_decode, ulaw_encode

ALL_PCM16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def reference_encode(sample: int) -> int:
    """G.711 μ-law encoder, scalar, written from the standard (Sun/CCITT reference form).

    The standard encodes 14-bit linear samples: drop the 2 low bits (arithmetic shift), take
    sign and magnitude, clip, add the bias of 33 (0x84 at 16-bit scale), find the segment
    whose end is >= the biased magnitude, keep 4 mantissa bits, invert all bits.
    """
    value = sample >> 2
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, 8159) + 0x21
    segment_ends = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
    for segment, end in enumerate(segment_ends):
        if value <= end:
            return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask
    return 0x7F ^ mask


def reference_decode(code: int) -> int:
    """G.711 μ-law decoder, scalar: ((2·mantissa + 33) << segment) − 33, at 16-bit scale."""
    code = ~code & 0xFF
    segment, mantissa = (code >> 4) & 0x07, code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << segment) - 0x84
    return -magnitude if code & 0x80 else magnitude


def test_encoder_matches_g711_reference_for_all_65536_inputs() -> None:
    expected = np.array([reference_encode(int(s)) for s in ALL_PCM16], dtype=np.uint8)
    actual = np.frombuffer(ulaw_encode(ALL_PCM16), dtype=np.uint8)
    mismatches = np.flatnonzero(actual != expected)
    assert mismatches.size == 0, (
        f"{mismatches.size} inputs differ, first {ALL_PCM16[mismatches[:5]]}"
    )


def test_decoder_matches_g711_reference_for_all_256_codes() -> None:
    expected = np.array([reference_decode(c) for c in ALL_CODES], dtype=np.int16)
    np.testing.assert_array_equal(ulaw_decode(ALL_CODES), expected)


def test_decoder_gives_the_g711_table_values_at_its_ends() -> None:
    # Positive and negative zero, the smallest steps, and full scale (8031 × 4 = 32124).
    codes = bytes([0xFF, 0x7F, 0xFE, 0x7E, 0x80, 0x00])
    assert ulaw_decode(codes).tolist() == [0, 0, 8, -8, 32124, -32124]


def test_encoder_saturates_at_the_largest_codes() -> None:
    assert ulaw_encode(np.array([32767, 32124, -32768, -32124], np.int16)) == bytes(
        [0x80, 0x80, 0x00, 0x00]
    )


def test_negative_samples_are_truncated_to_14_bits_before_encoding() -> None:
    # -1..-4 all become -1 at 14 bits (arithmetic shift), the smallest negative step; a
    # 16-bit-magnitude encoder would send -1..-3 to negative zero (0x7F) instead.
    assert ulaw_encode(np.array([0, 3, -1, -4, -5], np.int16)) == bytes(
        [0xFF, 0xFF, 0x7E, 0x7E, 0x7E]
    )


def test_every_code_survives_decode_then_encode_except_negative_zero() -> None:
    codes = np.frombuffer(ulaw_encode(ulaw_decode(ALL_CODES)), dtype=np.uint8)
    changed = [c for c in range(256) if codes[c] != c]
    assert changed == [0x7F]  # decodes to 0, which encodes as positive zero 0xFF
    assert codes[0x7F] == 0xFF


def test_tables_have_the_documented_sizes_and_are_read_only() -> None:
    assert ULAW_DECODE_TABLE.shape == (256,)
    assert ULAW_ENCODE_TABLE.shape == (65536,)
    assert not ULAW_DECODE_TABLE.flags.writeable
    assert not ULAW_ENCODE_TABLE.flags.writeable


def test_encoder_rejects_samples_that_are_not_int16() -> None:
    with pytest.raises(TypeError, match="int16"):
        ulaw_encode(np.zeros(4, dtype=np.int32))


def _audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("audioop", reason="audioop is gone in Python 3.13+")


def test_encoder_matches_audioop_for_all_65536_inputs_where_available() -> None:
    audioop = _audioop()
    expected = audioop.lin2ulaw(ALL_PCM16.astype("<i2").tobytes(), 2)
    assert ulaw_encode(ALL_PCM16) == expected


def test_decoder_matches_audioop_for_all_256_codes_where_available() -> None:
    audioop = _audioop()
    expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype="<i2")
    np.testing.assert_array_equal(ulaw_decode(ALL_CODES), expected)


def test_product_code_never_imports_audioop() -> None:
    # audioop is gone in Python 3.13; only this test module may touch it.
    package = Path(bridge.audio.__file__).parent
    imported = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert "numpy" in imported  # the walk does see imports
    assert "audioop" not in imported
