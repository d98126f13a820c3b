"""The compiled kernels: exact filter output, bit-identical under any chunking, and equal to
the pure-numpy path they replaced within 1 LSB.

Why 1 LSB and not 0 against the old path: it summed in float32 (in BLAS order), which is
within ~0.05 LSB of the exact filter output, so wherever the exact value lies that close to a
rounding boundary (x.5) it may round the other way. The kernels sum in float64 (error ~1e-12
LSB), which makes them equal to a float64 reference (scipy's upfirdn / numpy's convolve) to
0 LSB, and to themselves under any chunking to the bit, since each output's sum has a fixed
order whatever the chunk boundaries.
"""

from __future__ import annotations

import base64
import binascii
import itertools

import numpy as np
import pytest
from scipy import signal

from bridge.audio import (
    ULAW_ENCODE_TABLE,
    Framer,
    Resampler8kTo24k,
    Resampler24kTo8k,
    design_lowpass,
    make_pipeline,
    ulaw_decode,
    ulaw_encode,
)
from bridge.audio import _kernels as kernels
from bridge.audio.pipeline import Pcm16Pipeline
from bridge.audio.resample import KERNELS
from tests.audio.reference import (
    NumpyPcm16Pipeline,
    NumpyResampler8kTo24k,
    NumpyResampler24kTo8k,
)
from tests.audio.signals import random_spans, to_int16

SEEDS = [0, 1, 2, 3]


def noise(n: int, seed: int, scale: float = 9000) -> np.ndarray:
    # Loud enough that the filter overshoots full scale now and then: saturation is covered.
    return to_int16(np.random.default_rng(seed).standard_normal(n) * scale)


def speechlike(rate: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    return to_int16(
        (voice * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)) * 6000 + rng.standard_normal(n) * 200
    )


def exact_up(x: np.ndarray) -> np.ndarray:
    return to_int16(signal.upfirdn(3 * design_lowpass(), x.astype(np.float64), up=3))


def exact_down(x: np.ndarray) -> np.ndarray:
    return to_int16(np.convolve(x.astype(np.float64), design_lowpass())[2::3])


def byte_cuts(total: int, seed: int, count: int = 300) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    cuts = sorted({0, total, *(int(c) for c in rng.integers(0, total, count))})
    return list(itertools.pairwise(cuts))


# --- against the float64 reference and the old numpy path ----------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_upsampler_equals_the_exact_filter_output_to_0_lsb(seed: int) -> None:
    x = noise(8000, seed) if seed % 2 else speechlike(8000, 8000, seed)
    whole = Resampler8kTo24k().process(x)
    up = Resampler8kTo24k()
    spans = random_spans(len(x), np.random.default_rng(seed), 900)
    pieces = np.concatenate([up.process(x[a:b]) for a, b in spans])
    np.testing.assert_array_equal(whole, exact_up(x)[: len(whole)])
    np.testing.assert_array_equal(pieces, whole)


@pytest.mark.parametrize("seed", SEEDS)
def test_downsampler_equals_the_exact_filter_output_to_0_lsb(seed: int) -> None:
    x = noise(24001, seed) if seed % 2 else speechlike(24000, 24001, seed)
    whole = Resampler24kTo8k().process(x)
    down = Resampler24kTo8k()
    spans = random_spans(len(x), np.random.default_rng(seed), 3000)
    pieces = np.concatenate([down.process(x[a:b]) for a, b in spans])
    np.testing.assert_array_equal(whole, exact_down(x)[: len(whole)])
    np.testing.assert_array_equal(pieces, whole)


@pytest.mark.parametrize("seed", SEEDS)
def test_kernels_match_the_old_numpy_resamplers_within_1_lsb(seed: int) -> None:
    x8, x24 = noise(8000, seed), noise(24002, seed + 10)
    for new, old, x in [
        (Resampler8kTo24k(), NumpyResampler8kTo24k(), x8),
        (Resampler24kTo8k(), NumpyResampler24kTo8k(), x24),
    ]:
        ours, theirs = new.process(x), old.process(x)
        assert len(ours) == len(theirs)
        diff = np.abs(ours.astype(int) - theirs)
        assert diff.max() <= 1
        assert np.count_nonzero(diff) <= len(ours) // 200  # measured: well under 0.1 %


def test_pcm16_pipeline_matches_the_old_numpy_pipeline() -> None:
    ulaw = ulaw_encode(speechlike(8000, 16000, 5))
    payloads = [base64.b64encode(ulaw[i : i + 160]).decode() for i in range(0, len(ulaw), 160)]
    new, old = make_pipeline("pcm16"), NumpyPcm16Pipeline()
    for payload in payloads:
        ours = np.frombuffer(base64.b64decode(new.inbound(payload)), "<i2").astype(int)
        theirs = np.frombuffer(base64.b64decode(old.inbound(payload)), "<i2")
        assert np.abs(ours - theirs).max() <= 1
    pcm = speechlike(24000, 48001, 6).tobytes()
    deltas = [base64.b64encode(pcm[a:b]).decode() for a, b in byte_cuts(len(pcm), 6, 200)]
    ours_frames = [f for d in deltas for f in new.outbound(d)] + new.flush()
    theirs_frames = [f for d in deltas for f in old.outbound(d)] + old.flush()
    assert len(ours_frames) == len(theirs_frames) == 101
    ours_codes = np.frombuffer(b"".join(map(base64.b64decode, ours_frames)), np.uint8)
    theirs_codes = np.frombuffer(b"".join(map(base64.b64decode, theirs_frames)), np.uint8)
    # a 1 LSB difference moves a sample to the neighbouring μ-law code at most, and rarely
    assert np.count_nonzero(ours_codes != theirs_codes) <= len(ours_codes) // 200


def test_pcm16_outbound_frames_are_the_exact_filter_output_encoded() -> None:
    x = noise(48000, 9, scale=6000)
    data = x.tobytes()
    pipeline = make_pipeline("pcm16")
    deltas = [base64.b64encode(data[a:b]).decode() for a, b in byte_cuts(len(data), 9, 400)]
    frames = [base64.b64decode(f) for d in deltas for f in pipeline.outbound(d)]
    assert b"".join(frames) == ulaw_encode(exact_down(x)[:16000])


def test_pcm16_inbound_is_the_exact_filter_output_of_the_decoded_audio() -> None:
    ulaw = ulaw_encode(noise(8000, 10, scale=6000))
    pipeline = make_pipeline("pcm16")
    out = b"".join(
        base64.b64decode(pipeline.inbound(base64.b64encode(ulaw[a:b]).decode()))
        for a, b in byte_cuts(len(ulaw), 10, 60)
    )
    np.testing.assert_array_equal(np.frombuffer(out, "<i2"), exact_up(ulaw_decode(ulaw))[:24000])


# --- chunking: bit-identical, any split -------------------------------------------------------


@pytest.mark.parametrize("resampler_class", [Resampler8kTo24k, Resampler24kTo8k])
@pytest.mark.parametrize("seed", SEEDS)
def test_byte_chunks_that_split_samples_are_bit_identical_to_one_call(resampler_class, seed):
    data = noise(9001, seed).tobytes()
    resampler = resampler_class()
    chunked = b"".join(resampler.process_bytes(data[a:b]) for a, b in byte_cuts(len(data), seed))
    assert chunked == resampler_class().process_bytes(data)


def test_chunks_larger_than_the_kernel_block_are_bit_identical_to_small_ones() -> None:
    x8, x24 = noise(5 * kernels.BLOCK + 7, 11), noise(15 * kernels.BLOCK + 5, 12)
    up_one = Resampler8kTo24k().process(x8)
    up = Resampler8kTo24k()
    np.testing.assert_array_equal(
        np.concatenate([up.process(x8[i : i + 7]) for i in range(0, len(x8), 7)]), up_one
    )
    down_one = Resampler24kTo8k().process(x24)
    down = Resampler24kTo8k()
    np.testing.assert_array_equal(
        np.concatenate([down.process(x24[i : i + 5]) for i in range(0, len(x24), 5)]), down_one
    )


def test_pipeline_outbound_of_one_long_delta_equals_20_ms_deltas() -> None:
    data = noise(24000 * 5 + 1, 13, scale=5000).tobytes() + b"\x11"  # 5 s, odd bytes
    one = make_pipeline("pcm16")
    whole = one.outbound(base64.b64encode(data).decode()) + one.flush()
    split = make_pipeline("pcm16")
    frames = [
        f
        for i in range(0, len(data), 960)
        for f in split.outbound(base64.b64encode(data[i : i + 960]).decode())
    ]
    assert whole == frames + split.flush()
    assert len(whole) == 251  # 40000 samples + a 22-sample tail, padded


def test_pipeline_inbound_of_an_oversized_payload_grows_its_buffer() -> None:
    ulaw = ulaw_encode(noise(8000, 14, scale=5000))
    one, framed = make_pipeline("pcm16"), make_pipeline("pcm16")
    big = base64.b64decode(one.inbound(base64.b64encode(ulaw).decode()))
    small = b"".join(
        base64.b64decode(framed.inbound(base64.b64encode(ulaw[i : i + 160]).decode()))
        for i in range(0, len(ulaw), 160)
    )
    assert big == small and len(big) == 48000
    assert base64.b64decode(one.inbound(base64.b64encode(ulaw[:160]).decode())) != b""


# --- μ-law in the kernel ----------------------------------------------------------------------


def test_kernel_ulaw_encoder_matches_the_table_for_all_65536_inputs() -> None:
    import numba

    @numba.njit
    def encode_all(samples, out):  # type: ignore[no-untyped-def]
        for i in range(len(samples)):
            out[i] = kernels._ulaw_code(np.int64(samples[i]))

    samples = np.arange(-32768, 32768, dtype=np.int64)
    codes = np.empty(65536, dtype=np.uint8)
    encode_all(samples, codes)
    np.testing.assert_array_equal(
        codes, ULAW_ENCODE_TABLE[samples.astype(np.int16).view(np.uint16)]
    )


# --- input types ------------------------------------------------------------------------------


def test_process_accepts_non_contiguous_and_small_integer_arrays() -> None:
    x = noise(3000, 15)
    np.testing.assert_array_equal(
        Resampler24kTo8k().process(x[::2]), Resampler24kTo8k().process(x[::2].copy())
    )
    small = np.arange(-100, 100, dtype=np.int8)
    np.testing.assert_array_equal(
        Resampler8kTo24k().process(small), Resampler8kTo24k().process(small.astype(np.int16))
    )


def test_process_refuses_samples_that_may_not_fit_int16() -> None:
    with pytest.raises(TypeError):
        Resampler8kTo24k().process(np.zeros(10, dtype=np.int32))
    with pytest.raises(TypeError):
        Resampler24kTo8k().process(np.zeros(10, dtype=np.float64))


def test_process_bytes_accepts_bytearray_and_memoryview() -> None:
    data = noise(999, 16).tobytes()
    expected = Resampler24kTo8k().process_bytes(data)
    assert Resampler24kTo8k().process_bytes(bytearray(data)) == expected
    assert Resampler24kTo8k().process_bytes(memoryview(data)) == expected


# --- the framer's new paths -------------------------------------------------------------------


def test_push_b64_gives_the_same_frames_as_push_base64_encoded() -> None:
    data = bytes(i % 251 for i in range(2000))
    spans = random_spans(len(data), np.random.default_rng(17), 700)
    plain, encoded = Framer(), Framer()
    frames = [f for a, b in spans for f in plain.push(data[a:b])] + plain.flush()
    frames_b64 = [f for a, b in spans for f in encoded.push_b64(data[a:b])] + encoded.flush_b64()
    assert [base64.b64decode(f) for f in frames_b64] == frames
    assert b"".join(frames) == data + b"\xff" * (160 - len(data) % 160)


def test_framer_accepts_a_memoryview_of_int16_as_its_bytes() -> None:
    samples = np.arange(200, dtype=np.int16)
    framer = Framer()
    data = samples.tobytes()  # 400 bytes
    assert framer.push(memoryview(samples)) == [data[:160], data[160:320]]
    assert framer.pending == 80


def test_reserve_and_commit_grow_the_buffer_and_keep_the_order() -> None:
    framer = Framer()
    framer.push(b"\x01" * 100)
    buffer = framer.reserve(5000)
    assert len(buffer) >= 5100
    buffer[100:5100] = np.arange(5000) % 200
    frames = [base64.b64decode(f) for f in framer.commit_b64(5000)]
    assert len(frames) == 31 and framer.pending == 5100 - 31 * 160
    expected = b"\x01" * 100 + bytes(int(v) for v in np.arange(5000) % 200)
    assert b"".join(frames) == expected[: 31 * 160]
    rest = expected[31 * 160 :]
    assert framer.flush() == [rest + b"\xff" * (160 - len(rest))]


# --- pcmu: one frame passes through as it came --------------------------------------------------


def test_pcmu_one_frame_delta_is_passed_through_as_the_same_text() -> None:
    delta = base64.b64encode(bytes(range(160))).decode()
    assert make_pipeline("pcmu").outbound(delta)[0] is delta


@pytest.mark.parametrize("seed", range(8))
def test_pcmu_passthrough_equals_re_encoding_for_any_one_frame(seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 256, 160, dtype=np.uint8).tobytes()
    delta = base64.b64encode(data).decode()
    assert make_pipeline("pcmu").outbound(delta) == [delta]
    assert binascii.b2a_base64(data, newline=False).decode() == delta


def test_pcmu_non_canonical_text_is_re_encoded_canonically() -> None:
    data = bytes(159) + b"\x40"  # last byte 0x40: its 2 low bits are 0, as the "Q" says
    canonical = base64.b64encode(data).decode()
    assert canonical[-3:] == "A=="
    sloppy = canonical[:-3] + "B=="  # decodes the same (strict mode allows it), not canonical
    assert base64.b64decode(sloppy) == data
    assert make_pipeline("pcmu").outbound(sloppy) == [canonical]


def test_pcmu_one_frame_after_a_remainder_is_framed_not_passed_through() -> None:
    pipeline = make_pipeline("pcmu")
    assert pipeline.outbound(base64.b64encode(b"\x01" * 10).decode()) == []
    frames = pipeline.outbound(base64.b64encode(b"\x02" * 160).decode())
    assert [base64.b64decode(f) for f in frames] == [b"\x01" * 10 + b"\x02" * 150]
    assert pipeline.flush() == [base64.b64encode(b"\x02" * 10 + b"\xff" * 150).decode()]


def test_pcm16_inbound_saturates_overshoot_instead_of_wrapping() -> None:
    square = np.where(np.arange(1600) % 16 < 8, 32767, -32768).astype(np.int16)
    ulaw = ulaw_encode(square)
    pipeline = make_pipeline("pcm16")
    out = b"".join(
        base64.b64decode(pipeline.inbound(base64.b64encode(ulaw[i : i + 160]).decode()))
        for i in range(0, len(ulaw), 160)
    )
    exact = signal.upfirdn(3 * design_lowpass(), ulaw_decode(ulaw).astype(np.float64), up=3)
    assert exact.max() > 33000 and exact.min() < -33000  # so saturation is needed
    heard = np.frombuffer(out, "<i2")
    assert heard.max() == 32767 and heard.min() == -32768
    np.testing.assert_array_equal(heard, to_int16(exact[: len(heard)]))


def test_kernels_are_compiled_at_import_for_their_one_signature() -> None:
    for kernel in KERNELS:
        assert len(kernel.signatures) == 1
        assert not kernel._can_compile  # explicit signatures: never compiled lazily


# --- base64 inside the kernels ----------------------------------------------------------------

B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def outcome(fn, text: str) -> object:  # type: ignore[no-untyped-def]
    try:
        return fn(text)
    except ValueError as exc:
        return ("ValueError", str(exc))


@pytest.mark.parametrize("seed", range(3))
def test_fused_kernels_give_the_binascii_path_output_over_any_chunking(seed: int) -> None:
    """Base64 decode, resample and encode in one kernel call: the same text, frame for frame,
    as binascii around the plain kernels, for deltas of any size (odd bytes, all paddings)."""
    rng = np.random.default_rng(seed)
    caller = ulaw_encode(noise(8000 * 3, 20 + seed, scale=6000))
    model = noise(24000 * 3, 30 + seed, scale=6000).tobytes()
    fused, plain = Pcm16Pipeline(), Pcm16Pipeline()
    for start, stop in random_spans(len(caller), rng, 700):
        text = base64.b64encode(caller[start:stop]).decode()
        assert fused.inbound(text) == plain._inbound_binascii(text)
    frames_fused: list[str] = []
    frames_plain: list[str] = []
    for start, stop in random_spans(len(model), rng, 5000):
        text = base64.b64encode(model[start:stop]).decode()
        frames_fused += fused.outbound(text)
        frames_plain += plain._outbound_binascii(text)
    assert frames_fused == frames_plain and len(frames_fused) > 100
    assert fused.flush() == plain.flush() and fused._down._fed == plain._down._fed


def test_fused_kernels_track_whether_anything_was_fed_as_the_plain_path() -> None:
    for data in (b"", b"\x01", b"\x01\x02", b"\x01\x02\x03"):
        fused, plain = Pcm16Pipeline(), Pcm16Pipeline()
        text = base64.b64encode(data).decode()
        fused.outbound(text)
        plain._outbound_binascii(text)
        assert fused._down._fed == plain._down._fed, data
        assert fused.flush() == plain.flush()


def base64_like(rng: np.random.Generator) -> str:
    """Text near base64: valid encodings with a character or the padding disturbed."""
    data = rng.integers(0, 256, int(rng.integers(0, 12)), dtype=np.uint8).tobytes()
    text = list(base64.b64encode(data).decode())
    for _ in range(int(rng.integers(0, 3))):
        choice = rng.integers(0, 4)
        position = int(rng.integers(0, len(text) + 1))
        char = str(rng.choice(list(B64_ALPHABET + "==== \n-_.é")))
        if choice == 0 or not text:
            text.insert(position, char)
        elif choice == 1:
            text[min(position, len(text) - 1)] = char
        elif choice == 2:
            del text[min(position, len(text) - 1)]
        else:
            text.append("=")
    return "".join(text)


def test_base64_acceptance_and_errors_are_exactly_binascii_strict() -> None:
    """Whatever the kernel accepts, binascii accepts with the same bytes; what it refuses
    goes to binascii, which decodes it or names the error: the pipeline's answer for any text
    is the binascii path's."""
    rng = np.random.default_rng(7)
    cases = [base64_like(rng) for _ in range(4000)]
    cases += ["", "=", "==", "A===", "AA==", "AAA=", "AAAA=", "AAAA==", "AA=A", "AAAA====", "QR=="]
    accepted = refused = 0
    for text in cases:
        for direction in ("in", "out"):
            fused, plain = Pcm16Pipeline(), Pcm16Pipeline()
            fn = fused.inbound if direction == "in" else fused.outbound
            ref = plain._inbound_binascii if direction == "in" else plain._outbound_binascii
            got, want = outcome(fn, text), outcome(ref, text)
            assert got == want, (direction, text)
            if isinstance(want, tuple):
                refused += 1
            else:
                accepted += 1
    assert accepted > 2000 and refused > 2000  # both sides of the line are exercised


def test_the_kernel_decoder_takes_canonical_text_and_leaves_the_rest_to_binascii() -> None:
    """`-1` from the kernel for non-canonical text that binascii still decodes, so such text
    is decoded by binascii; canonical text never takes that path."""
    h = np.zeros(kernels.DOWN_STATE_SHAPE)
    x = np.zeros(kernels.DOWN_WINDOW_SHAPE)
    work = np.zeros(64, dtype=np.uint8)
    out = np.zeros(64, dtype=np.uint8)
    for text in (b"AAAA=", b"AA=A", b"AAA", b"AAAA AAAA", b"-_AA"):
        state = np.zeros(kernels.ISTATE_SIZE, dtype=np.int64)
        assert KERNELS.downsample_b64(text, h, x, state, work, out, 0) == -1
    for data in (b"", b"\x00\x01", b"\x00\x01\x02\x03", bytes(range(12))):
        state = np.zeros(kernels.ISTATE_SIZE, dtype=np.int64)
        text = base64.b64encode(data)
        assert KERNELS.downsample_b64(text, h, x, state, work, out, 0) == len(data) // 6
        assert bytes(work[: len(data)]) == data
