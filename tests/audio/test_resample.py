"""Streaming 8 kHz ↔ 24 kHz resamplers: exact under any chunking, clean in band and out."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import signal

from bridge.audio import Resampler8kTo24k, Resampler24kTo8k, design_lowpass
from bridge.audio import resample as resample_module
from tests.audio.signals import amplitude_at, amplitude_spectrum, db, random_spans, to_int16, tone

SEEDS = [0, 1, 2]


def noise(n: int, seed: int) -> np.ndarray:
    # Loud enough that the filter overshoots full scale now and then, so saturation is covered.
    return to_int16(np.random.default_rng(seed).standard_normal(n) * 9000)


def run_chunked(resampler, x: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    return np.concatenate([resampler.process(x[a:b]) for a, b in spans])


def steady(x: np.ndarray, rate: int) -> np.ndarray:
    """The last whole second, past the filter's start-up transient."""
    return x[-rate:]


# --- exactness under chunking -------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_upsampler_chunked_output_matches_whole_signal_within_1_lsb(seed: int) -> None:
    x = noise(6000, seed)
    whole = Resampler8kTo24k().process(x)
    chunked = run_chunked(
        Resampler8kTo24k(), x, random_spans(len(x), np.random.default_rng(seed), 1500)
    )
    assert len(chunked) == len(whole) == 18000
    assert np.abs(chunked.astype(int) - whole).max() <= 1


@pytest.mark.parametrize("seed", SEEDS)
def test_downsampler_chunked_output_matches_whole_signal_within_1_lsb(seed: int) -> None:
    x = noise(18001, seed)
    whole = Resampler24kTo8k().process(x)
    chunked = run_chunked(
        Resampler24kTo8k(), x, random_spans(len(x), np.random.default_rng(seed), 4000)
    )
    assert len(chunked) == len(whole) == 6000
    assert np.abs(chunked.astype(int) - whole).max() <= 1


def test_one_sample_chunks_match_whole_signal_within_1_lsb() -> None:
    x8, x24 = noise(1000, 5), noise(3000, 6)
    up, down = Resampler8kTo24k(), Resampler24kTo8k()
    up_chunked = np.concatenate([up.process(x8[i : i + 1]) for i in range(len(x8))])
    down_chunked = np.concatenate([down.process(x24[i : i + 1]) for i in range(len(x24))])
    assert np.abs(up_chunked.astype(int) - Resampler8kTo24k().process(x8)).max() <= 1
    assert np.abs(down_chunked.astype(int) - Resampler24kTo8k().process(x24)).max() <= 1


def test_upsampler_equals_scipy_upfirdn_of_whole_signal_within_1_lsb() -> None:
    x = noise(6000, 7)
    reference = to_int16(signal.upfirdn(3 * design_lowpass(), x.astype(np.float64), up=3))
    chunked = run_chunked(
        Resampler8kTo24k(), x, random_spans(len(x), np.random.default_rng(7), 900)
    )
    assert np.abs(chunked.astype(int) - reference[: len(chunked)]).max() <= 1


def test_downsampler_equals_whole_signal_convolution_within_1_lsb() -> None:
    # Output m is the filter over inputs up to 3m + 2: full convolution sampled at 2, 5, 8, ...
    x = noise(18002, 8)
    reference = to_int16(np.convolve(x.astype(np.float64), design_lowpass())[2::3])
    chunked = run_chunked(
        Resampler24kTo8k(), x, random_spans(len(x), np.random.default_rng(8), 2000)
    )
    assert len(chunked) == 6000
    assert np.abs(chunked.astype(int) - reference[: len(chunked)]).max() <= 1


@pytest.mark.parametrize("resampler_class", [Resampler8kTo24k, Resampler24kTo8k])
def test_byte_chunks_that_split_a_sample_match_whole_signal_within_1_lsb(resampler_class) -> None:
    x = noise(9000, 9)
    data = x.astype("<i2").tobytes()
    rng = np.random.default_rng(9)
    cuts = sorted({0, len(data), *(int(c) for c in rng.integers(0, len(data), 400))})
    assert any(c % 2 for c in cuts), "the chunking must split samples"
    resampler = resampler_class()
    chunked = b"".join(resampler.process_bytes(data[a:b]) for a, b in itertools.pairwise(cuts))
    whole = resampler_class().process_bytes(data)
    assert len(chunked) == len(whole)
    diff = np.frombuffer(chunked, "<i2").astype(int) - np.frombuffer(whole, "<i2")
    assert np.abs(diff).max() <= 1


def test_overshoot_past_full_scale_saturates_instead_of_wrapping() -> None:
    # A full-scale 500 Hz square wave rings ~10 % past full scale through any lowpass.
    square = np.where(np.arange(800) % 16 < 8, 32767, -32768).astype(np.int16)
    y = Resampler8kTo24k().process(square)
    exact = signal.upfirdn(3 * design_lowpass(), square.astype(np.float64), up=3)[: len(y)]
    assert exact.max() > 34000 and exact.min() < -34000
    assert y.max() == 32767 and y.min() == -32768
    assert np.abs(y.astype(int) - to_int16(exact)).max() <= 1


# --- exact counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_upsampler_gives_exactly_three_samples_per_input_over_any_chunking(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = noise(5000, seed)
    up, total_in, total_out = Resampler8kTo24k(), 0, 0
    for a, b in random_spans(len(x), rng, 1200):
        total_in += b - a
        total_out += len(up.process(x[a:b]))
        assert total_out == 3 * total_in


@pytest.mark.parametrize("seed", SEEDS)
def test_downsampler_gives_floor_of_a_third_over_any_chunking(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = noise(15001, seed)
    down, total_in, total_out = Resampler24kTo8k(), 0, 0
    for a, b in random_spans(len(x), rng, 3000):
        expected = down.output_count(b - a)
        out = down.process(x[a:b])
        total_in += b - a
        total_out += len(out)
        assert len(out) == expected
        assert total_out == total_in // 3
        assert down.pending == total_in % 3
    assert total_out == 5000


def test_byte_chunks_give_exact_counts_with_the_odd_byte_carried() -> None:
    down = Resampler24kTo8k()
    sizes = [1, 1, 3, 5, 960, 7, 2, 1]  # 980 bytes = 490 samples -> 163 outputs, 1 pending
    out = [len(down.process_bytes(b"\x01" * n)) for n in sizes]
    assert sum(out) == 2 * (490 // 3)
    assert down.pending == 490 % 3


def test_empty_chunks_give_empty_output_and_change_nothing() -> None:
    x = noise(300, 10)
    up, down = Resampler8kTo24k(), Resampler24kTo8k()
    assert len(up.process(x[:0])) == 0 and len(down.process(x[:0])) == 0
    assert up.process_bytes(b"") == b"" and down.process_bytes(b"") == b""
    np.testing.assert_array_equal(up.process(x), Resampler8kTo24k().process(x))
    np.testing.assert_array_equal(down.process(x), Resampler24kTo8k().process(x))


# --- frequency response ------------------------------------------------------------------------


@pytest.mark.parametrize("freq_hz", [300, 500, 1000, 2000, 3000, 3400])
def test_upsampler_passes_telephone_band_tones_within_half_a_db(freq_hz: int) -> None:
    x = to_int16(tone(freq_hz, 8000, 16000, dbfs=-6))
    y = steady(Resampler8kTo24k().process(x), 24000)
    gain = db(amplitude_at(y, freq_hz, 24000) / amplitude_at(steady(x, 8000), freq_hz, 8000))
    assert abs(gain) <= 0.5


@pytest.mark.parametrize("freq_hz", [300, 1000, 2000, 3000, 3400])
def test_upsampler_images_above_4_khz_are_at_least_60_db_down(freq_hz: int) -> None:
    x = to_int16(tone(freq_hz, 8000, 16000, dbfs=-6))
    y = steady(Resampler8kTo24k().process(x), 24000)
    freqs, spectrum = amplitude_spectrum(y)
    level = amplitude_at(y, freq_hz, 24000)
    worst = spectrum[freqs * 24000 > 4000].max()
    assert db(worst / level) <= -60.0
    # and specifically at the first image, 8000 − f, which the stopband edge is set for
    assert db(amplitude_at(y, 8000 - freq_hz, 24000) / level) <= -60.0


@pytest.mark.parametrize("freq_hz", [100, 300, 1000, 2000, 3000, 3400])
def test_downsampler_passes_tones_up_to_3400_hz_within_half_a_db(freq_hz: int) -> None:
    x = to_int16(tone(freq_hz, 24000, 48000, dbfs=-6))
    y = steady(Resampler24kTo8k().process(x), 8000)
    gain = db(amplitude_at(y, freq_hz, 8000) / amplitude_at(steady(x, 24000), freq_hz, 24000))
    assert abs(gain) <= 0.5


@pytest.mark.parametrize("freq_hz", [5000, 7000, 10000])
def test_downsampler_attenuates_5_7_and_10_khz_by_at_least_60_db(freq_hz: int) -> None:
    x = to_int16(tone(freq_hz, 24000, 48000, dbfs=-6))
    y = steady(Resampler24kTo8k().process(x), 8000)
    _, spectrum = amplitude_spectrum(y)  # anything at all in 0–4 kHz is an alias
    assert db(spectrum.max() / amplitude_at(steady(x, 24000), freq_hz, 24000)) <= -60.0


def test_filter_has_69_taps_flat_passband_and_65_db_stopband() -> None:
    taps = design_lowpass()
    freqs, response = signal.freqz(taps, worN=np.linspace(0, 12000, 24001), fs=24000)
    gain_db = 20 * np.log10(np.abs(response))
    assert len(taps) == 69
    assert np.abs(gain_db[freqs <= 3400]).max() <= 0.02
    assert gain_db[freqs >= 4600].max() <= -65.0


# --- delay -------------------------------------------------------------------------------------


def test_group_delay_of_each_direction_is_at_most_2_ms() -> None:
    assert Resampler8kTo24k().group_delay_ms == pytest.approx(34 / 24)  # 1.417 ms
    assert Resampler24kTo8k().group_delay_ms == pytest.approx(32 / 24)  # 1.333 ms
    assert Resampler8kTo24k().group_delay_ms <= 2.0
    assert Resampler24kTo8k().group_delay_ms <= 2.0


def test_reported_delay_is_where_an_impulse_comes_out() -> None:
    impulse8 = np.zeros(100, np.int16)
    impulse8[0] = 10000
    peak = int(np.argmax(Resampler8kTo24k().process(impulse8)))
    assert peak / 24 == pytest.approx(Resampler8kTo24k().group_delay_ms)
    impulse24 = np.zeros(300, np.int16)
    impulse24[1] = 10000  # input time 1/24 ms; lands on the centre tap of output 11
    peak = int(np.argmax(Resampler24kTo8k().process(impulse24)))
    assert peak / 8 - 1 / 24 == pytest.approx(Resampler24kTo8k().group_delay_ms)


# --- reset, drain, design once -------------------------------------------------------------------


@pytest.mark.parametrize("resampler_class", [Resampler8kTo24k, Resampler24kTo8k])
def test_reset_makes_a_used_resampler_behave_like_a_new_one(resampler_class) -> None:
    used = resampler_class()
    used.process_bytes(noise(1001, 11).tobytes() + b"\x7f")  # history, a remainder, a half sample
    used.reset()
    x = noise(2000, 12)
    np.testing.assert_array_equal(used.process(x), resampler_class().process(x))


def test_drain_emits_the_filter_tail_and_leaves_a_fresh_resampler() -> None:
    x = noise(3001, 13)
    down = Resampler24kTo8k()
    body = down.process(x)
    tail = down.drain()
    full = to_int16(np.convolve(x.astype(np.float64), design_lowpass()))
    assert len(body) == 1000 and len(tail) == 23  # 1 pending sample + 68 zeros -> 23 outputs
    # body + tail is the whole convolution (every output any input touches), nothing more
    assert len(full[2::3]) == 1023
    assert np.abs(np.concatenate([body, tail]).astype(int) - full[2::3]).max() <= 1
    np.testing.assert_array_equal(down.process(x), Resampler24kTo8k().process(x))


def test_drain_of_a_fresh_resampler_is_empty() -> None:
    assert len(Resampler24kTo8k().drain()) == 0
    assert len(Resampler8kTo24k().drain()) == 0


def test_mixing_sample_and_byte_input_with_half_a_sample_pending_is_refused() -> None:
    down = Resampler24kTo8k()
    down.process_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="half a sample"):
        down.process(np.zeros(3, np.int16))


def test_constructing_resamplers_does_not_design_a_filter(monkeypatch) -> None:
    design_lowpass()  # the process's one design

    def no_design(*args, **kwargs):
        raise AssertionError("filter designed again")

    monkeypatch.setattr(resample_module.signal, "remez", no_design)
    for _ in range(3):
        Resampler8kTo24k().process(noise(160, 14))
        Resampler24kTo8k().process(noise(480, 14))
