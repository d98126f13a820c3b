"""The facade the call code uses: base64 in, base64 out, 20 ms frames to Twilio."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from bridge.audio import (
    AudioPipeline,
    Pcm16Pipeline,
    PcmuPipeline,
    Resampler8kTo24k,
    Resampler24kTo8k,
    make_pipeline,
    ulaw_decode,
    ulaw_encode,
)
from tests.audio.signals import random_spans, snr_db, to_int16, tone

# The telephony test tone: exactly 1000 Hz repeats every 8 samples at 8 kHz, so μ-law's error
# never averages out and the SNR swings from 32 to 51 dB with the tone's phase alone.
TEST_TONE_HZ = 1004


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def twilio_payloads(ulaw: bytes) -> list[str]:
    return [b64(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160)]


def uneven_deltas(data: bytes, seed: int, largest: int = 3000) -> list[str]:
    spans = random_spans(len(data), np.random.default_rng(seed), largest)
    return [b64(data[a:b]) for a, b in spans]


def outbound_all(pipeline: AudioPipeline, deltas: list[str]) -> list[bytes]:
    return [unb64(frame) for delta in deltas for frame in pipeline.outbound(delta)]


def test_make_pipeline_gives_each_format_with_its_byte_rate() -> None:
    pcm16, pcmu = make_pipeline("pcm16"), make_pipeline("pcmu")
    assert isinstance(pcm16, Pcm16Pipeline) and isinstance(pcm16, AudioPipeline)
    assert isinstance(pcmu, PcmuPipeline) and isinstance(pcmu, AudioPipeline)
    assert (pcm16.upstream_format, pcm16.upstream_bytes_per_ms) == ("pcm16", 48)
    assert (pcmu.upstream_format, pcmu.upstream_bytes_per_ms) == ("pcmu", 8)


def test_make_pipeline_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown upstream audio format 'g729'"):
        make_pipeline("g729")


# --- pcm16 -----------------------------------------------------------------------------------


def test_pcm16_inbound_turns_a_20_ms_frame_into_20_ms_at_24_khz() -> None:
    pipeline = make_pipeline("pcm16")
    out = unb64(pipeline.inbound(b64(b"\xff" * 160)))
    assert len(out) == 960 == 20 * pipeline.upstream_bytes_per_ms


def test_pcm16_inbound_tone_has_at_least_35_db_snr_against_the_ideal_tone() -> None:
    ideal_8k = tone(TEST_TONE_HZ, 8000, 8000, dbfs=-10)
    pipeline = make_pipeline("pcm16")
    out = b"".join(
        unb64(pipeline.inbound(p)) for p in twilio_payloads(ulaw_encode(to_int16(ideal_8k)))
    )
    heard = np.frombuffer(out, "<i2")
    delay_s = Resampler8kTo24k().group_delay_ms / 1000
    ideal_24k = tone(TEST_TONE_HZ, 24000, len(heard), dbfs=-10, delay_s=delay_s)
    skip = 240  # 10 ms of filter start-up, where the ideal tone was already playing
    assert snr_db(ideal_24k[skip:], heard[skip:]) >= 35.0


def test_pcm16_outbound_tone_has_at_least_35_db_snr_against_the_ideal_tone() -> None:
    ideal_24k = tone(TEST_TONE_HZ, 24000, 24000, dbfs=-10)
    pipeline = make_pipeline("pcm16")
    frames = outbound_all(pipeline, uneven_deltas(to_int16(ideal_24k).tobytes(), seed=1))
    heard = ulaw_decode(b"".join(frames))
    assert len(heard) == 8000
    delay_s = Resampler24kTo8k().group_delay_ms / 1000
    ideal_8k = tone(TEST_TONE_HZ, 8000, len(heard), dbfs=-10, delay_s=delay_s)
    skip = 80
    assert snr_db(ideal_8k[skip:], heard[skip:]) >= 35.0


def test_pcm16_round_trip_returns_the_caller_audio_delayed_by_2_75_ms() -> None:
    # Caller audio in, echoed straight back out: both filters' delays add up to 66 samples at
    # 24 kHz, exactly 22 samples at 8 kHz. The filters are flat to 0.014 dB, so re-encoding
    # lands back on the caller's own μ-law codes almost everywhere (measured 69 dB to exact).
    ulaw = ulaw_encode(to_int16(tone(TEST_TONE_HZ, 8000, 8000, dbfs=-10)))
    pipeline = make_pipeline("pcm16")
    echoed = [pipeline.inbound(p) for p in twilio_payloads(ulaw)]
    heard = ulaw_decode(b"".join(outbound_all(pipeline, echoed)))
    sent = ulaw_decode(ulaw)
    delay = Resampler8kTo24k().group_delay_ms + Resampler24kTo8k().group_delay_ms
    assert delay == pytest.approx(2.75)
    assert len(heard) == 8000
    assert snr_db(sent[100:-22], heard[122:]) >= 50.0


def test_pcm16_outbound_gives_one_160_byte_frame_per_20_ms() -> None:
    pipeline = make_pipeline("pcm16")
    frames = outbound_all(pipeline, [b64(bytes(960))] * 5)
    assert [len(f) for f in frames] == [160] * 5


def test_pcm16_outbound_deltas_split_mid_sample_give_the_same_frames_as_one_delta() -> None:
    data = to_int16(np.random.default_rng(2).standard_normal(4800) * 5000).tobytes()
    whole = outbound_all(make_pipeline("pcm16"), [b64(data)])
    split = outbound_all(make_pipeline("pcm16"), uneven_deltas(data, seed=3, largest=700))
    assert len(whole) == len(split) == 10
    assert whole == split


def test_pcm16_flush_drains_the_filter_and_pads_the_last_frame() -> None:
    pipeline = make_pipeline("pcm16")
    # 30 ms: one whole frame now, 80 samples left, plus the filter's 22-sample tail on flush
    assert len(pipeline.outbound(b64(to_int16(tone(440, 24000, 720, dbfs=-10)).tobytes()))) == 1
    last = [unb64(f) for f in pipeline.flush()]
    assert [len(f) for f in last] == [160]
    assert last[0][102:] == b"\xff" * 58  # 80 + 22 = 102 samples of audio, then silence
    assert last[0][80:102] != b"\xff" * 22  # the tail carries the end of the tone
    assert pipeline.flush() == []


def test_pcm16_flush_with_nothing_sent_returns_nothing() -> None:
    assert make_pipeline("pcm16").flush() == []


def test_pcm16_reset_outbound_drops_the_interrupted_audio() -> None:
    delta = b64(to_int16(tone(440, 24000, 1440, dbfs=-10)).tobytes())
    pipeline = make_pipeline("pcm16")
    pipeline.outbound(b64(to_int16(tone(300, 24000, 1001, dbfs=-3)).tobytes()))
    pipeline.outbound(b64(b"\x01"))  # half a sample pending too
    pipeline.reset_outbound()
    assert pipeline.flush() == []
    assert pipeline.outbound(delta) == make_pipeline("pcm16").outbound(delta)


def test_pcm16_inbound_continues_across_reset_outbound() -> None:
    payloads = twilio_payloads(ulaw_encode(to_int16(tone(700, 8000, 1600, dbfs=-10))))
    reference = make_pipeline("pcm16")
    pipeline = make_pipeline("pcm16")
    for i, payload in enumerate(payloads):
        if i == 5:
            pipeline.reset_outbound()
        assert pipeline.inbound(payload) == reference.inbound(payload)


# --- pcmu -------------------------------------------------------------------------------------


def test_pcmu_inbound_passes_the_payload_through_unchanged() -> None:
    payload = b64(bytes(range(160)))
    assert make_pipeline("pcmu").inbound(payload) == payload


def test_pcmu_outbound_frames_the_same_bytes_into_160_byte_frames() -> None:
    ulaw = bytes(i % 256 for i in range(1000))
    pipeline = make_pipeline("pcmu")
    frames = outbound_all(pipeline, uneven_deltas(ulaw, seed=4, largest=300))
    frames += [unb64(f) for f in pipeline.flush()]
    assert [len(f) for f in frames] == [160] * 7
    assert b"".join(frames) == ulaw + b"\xff" * 120


def test_pcmu_reset_outbound_drops_the_remainder() -> None:
    pipeline = make_pipeline("pcmu")
    pipeline.outbound(b64(b"\x05" * 100))
    pipeline.reset_outbound()
    assert pipeline.flush() == []


# --- both -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pcm16", "pcmu"])
@pytest.mark.parametrize("bad", ["not base64!", "QUJD*", "QQ", "é"])
def test_invalid_base64_raises_a_value_error_naming_it(fmt: str, bad: str) -> None:
    pipeline = make_pipeline(fmt)
    with pytest.raises(ValueError, match="Twilio media payload is not valid base64"):
        pipeline.inbound(bad)
    with pytest.raises(ValueError, match="Realtime audio delta is not valid base64"):
        pipeline.outbound(bad)


@pytest.mark.parametrize("fmt", ["pcm16", "pcmu"])
def test_empty_audio_gives_empty_results(fmt: str) -> None:
    pipeline = make_pipeline(fmt)
    assert pipeline.inbound("") == ""
    assert pipeline.outbound("") == []
    assert pipeline.flush() == []
