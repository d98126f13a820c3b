"""Cost of the audio core per 20 ms frame, and why chunked `resample_poly` is not used.

Run: `.venv/bin/python bench/audio.py [--frames N]`. Prints µs per 20 ms frame (median and
p99 over N frames) for each stage and for the whole inbound and outbound frame paths, then
the naive per-chunk `scipy.signal.resample_poly` with its SNR against whole-signal output.
Timings are wall-clock on a shared machine: run it more than once.
"""

from __future__ import annotations

import argparse
import binascii
import gc
import time
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from bridge.audio import (
    Framer,
    Resampler8kTo24k,
    Resampler24kTo8k,
    make_pipeline,
    ulaw_decode,
    ulaw_encode,
)

FRAME_8K = 160  # samples (and μ-law bytes) per 20 ms at 8 kHz
FRAME_24K = 480  # samples per 20 ms at 24 kHz
TARGET_US = 30.0


def speechlike(rate: int, seconds: float, seed: int = 7) -> NDArray[np.int16]:
    """Harmonics of a wandering pitch under a syllable-rate envelope, about −16 dBFS RMS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 25) if k * 170 < 3400)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    noise = rng.standard_normal(len(t)) * 0.05
    x = (voice * envelope + noise) * 4000
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def time_per_call(fn: Callable[[object], object], inputs: Sequence[object]) -> NDArray:
    """µs per call, one sample per input; GC off so its pauses do not land in one stage."""
    for item in inputs[:200]:
        fn(item)
    out = np.empty(len(inputs))
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i, item in enumerate(inputs):
            start = clock()
            fn(item)
            out[i] = clock() - start
    finally:
        gc.enable()
    return out / 1000.0


def snr_db(reference: NDArray, test: NDArray) -> float:
    n = min(len(reference), len(test))
    ref = reference[:n].astype(np.float64)
    err = test[:n].astype(np.float64) - ref
    if not err.any():
        return float("inf")
    return float(10 * np.log10(np.sum(ref**2) / np.sum(err**2)))


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000, help="20 ms frames per stage")
    args = parser.parse_args()
    n = args.frames
    seconds = n * 0.02

    pcm8 = speechlike(8000, seconds)
    ulaw = ulaw_encode(pcm8)
    ulaw_frames = [ulaw[i : i + FRAME_8K] for i in range(0, len(ulaw), FRAME_8K)]
    payloads = [b64(f) for f in ulaw_frames]
    pcm8 = ulaw_decode(ulaw)  # what the inbound path really resamples
    pcm8_frames = [pcm8[i : i + FRAME_8K] for i in range(0, len(pcm8), FRAME_8K)]

    pcm24 = speechlike(24000, seconds, seed=8)
    pcm24_frames = [pcm24[i : i + FRAME_24K] for i in range(0, len(pcm24), FRAME_24K)]
    pcm24_bytes = [f.tobytes() for f in pcm24_frames]
    deltas = [b64(b) for b in pcm24_bytes]
    up_out = [f.repeat(3).tobytes() for f in pcm8_frames]  # 960 bytes, as the up stage gives
    down_out = [ulaw_encode(f[::3]) for f in pcm24_frames]  # 160 bytes, as the encoder gives

    up, down, framer = Resampler8kTo24k(), Resampler24kTo8k(), Framer()
    rows: list[tuple[str, NDArray, str]] = []

    def stage(name: str, fn: Callable[[object], object], inputs: Sequence, note: str = "") -> None:
        rows.append((name, time_per_call(fn, inputs), note))

    # Inbound: Twilio media payload -> input_audio_buffer.append audio.
    stage(
        "in: base64 decode (216 chars)",
        lambda s: binascii.a2b_base64(s, strict_mode=True),
        payloads,
    )
    stage("in: μ-law decode (160 B)", ulaw_decode, ulaw_frames)
    stage("in: resample 8k→24k (160→480)", up.process, pcm8_frames)
    stage(
        "in: to bytes + base64 encode (960 B)",
        lambda a: b64(a.tobytes()),
        [f.repeat(3) for f in pcm8_frames],
    )
    inbound = make_pipeline("pcm16")
    stage("INBOUND whole frame (pcm16)", inbound.inbound, payloads, "target ≤ 30 µs median")

    # Outbound: output_audio.delta -> Twilio media frames.
    stage(
        "out: base64 decode (1280 chars)",
        lambda s: binascii.a2b_base64(s, strict_mode=True),
        deltas,
    )
    stage("out: resample 24k→8k (480→160)", down.process, pcm24_frames)
    stage("out: μ-law encode (160)", ulaw_encode, [np.frombuffer(b, np.int16) for b in up_out])
    stage("out: framer (160 B)", framer.push, down_out)
    stage("out: base64 encode (160 B)", b64, down_out)
    outbound = make_pipeline("pcm16")
    stage("OUTBOUND whole frame (pcm16)", outbound.outbound, deltas, "target ≤ 30 µs median")

    # Real deltas are not 20 ms each: time uneven ones (odd byte counts too), per 20 ms.
    rng = np.random.default_rng(3)
    cuts = np.cumsum(rng.integers(1, 4 * 960, size=len(pcm24) * 2 // 960))
    whole = pcm24.tobytes()
    cuts = cuts[cuts < len(whole)]
    uneven = [b64(c) for c in np.split(np.frombuffer(whole, np.uint8), cuts)]
    uneven_pipe = make_pipeline("pcm16")
    per_delta = time_per_call(uneven_pipe.outbound, uneven)
    audio_frames = sum(len(binascii.a2b_base64(u)) for u in uneven) / 960.0
    rows.append(
        (
            "OUTBOUND uneven deltas, per 20 ms",
            np.array([per_delta.sum() / audio_frames]),
            f"total / frames; {len(uneven)} deltas of 1–3839 B, median {np.median(per_delta):.1f}"
            " µs each",
        )
    )

    passthrough = make_pipeline("pcmu")
    stage("inbound whole frame (pcmu)", passthrough.inbound, payloads)
    stage("outbound whole frame (pcmu)", passthrough.outbound, [b64(u) for u in down_out])

    # The naive way: a fresh resample_poly per 20 ms chunk.
    naive_up = time_per_call(lambda f: signal.resample_poly(f, 3, 1), pcm8_frames)
    naive_down = time_per_call(lambda f: signal.resample_poly(f, 1, 3), pcm24_frames)
    whole_up = signal.resample_poly(pcm8.astype(np.float64), 3, 1)
    whole_down = signal.resample_poly(pcm24.astype(np.float64), 1, 3)
    chunked_up = np.concatenate(
        [signal.resample_poly(f.astype(np.float64), 3, 1) for f in pcm8_frames]
    )
    chunked_down = np.concatenate(
        [signal.resample_poly(f.astype(np.float64), 1, 3) for f in pcm24_frames]
    )
    snr_up, snr_down = snr_db(whole_up, chunked_up), snr_db(whole_down, chunked_down)
    rows.append(
        ("naive resample_poly 8k→24k per frame", naive_up, f"SNR vs whole signal {snr_up:.1f} dB")
    )
    rows.append(
        (
            "naive resample_poly 24k→8k per frame",
            naive_down,
            f"SNR vs whole signal {snr_down:.1f} dB",
        )
    )

    # Ours, chunked vs one call on the whole signal.
    ours_up = Resampler8kTo24k().process(pcm8)
    r = Resampler8kTo24k()
    ours_up_chunked = np.concatenate([r.process(f) for f in pcm8_frames])
    ours_down = Resampler24kTo8k().process(pcm24)
    r2 = Resampler24kTo8k()
    ours_down_chunked = np.concatenate([r2.process(f) for f in pcm24_frames])
    max_up = int(np.abs(ours_up.astype(int) - ours_up_chunked).max())
    max_down = int(np.abs(ours_down.astype(int) - ours_down_chunked).max())

    # Length drift when chunks are not multiples of 3 (deltas of 1001 samples, 24k → 8k).
    odd_chunks = [pcm24[i : i + 1001] for i in range(0, len(pcm24), 1001)]
    naive_len = sum(len(signal.resample_poly(c, 1, 3)) for c in odd_chunks)
    r3 = Resampler24kTo8k()
    ours_len = sum(len(r3.process(c)) for c in odd_chunks)
    exact = len(pcm24) // 3

    print(f"audio core, µs per 20 ms frame, {n} frames per stage ({seconds:.0f} s of audio)")
    print()
    print(f"{'stage':<40} {'median':>8} {'p99':>8}  note")
    print("-" * 90)
    for name, us, note in rows:
        med = float(np.median(us))
        if "target" in note:
            note = f"{note}: {'MET' if med <= TARGET_US else 'MISSED'}"
        p99 = f"{np.percentile(us, 99):8.1f}" if len(us) > 1 else f"{'-':>8}"
        print(f"{name:<40} {med:8.1f} {p99}  {note}")
    print()
    print("streaming resamplers, chunked by 20 ms vs one call on the whole signal:")
    print(f"  8k→24k max diff {max_up} LSB, 24k→8k max diff {max_down} LSB")
    print(f"  group delay: 8k→24k {up.group_delay_ms:.3f} ms, 24k→8k {down.group_delay_ms:.3f} ms")
    print(f"length after {seconds:.0f} s in 1001-sample deltas (24k→8k), exact is {exact}:")
    print(
        f"  naive resample_poly {naive_len} ({(naive_len - exact) / 8:+.1f} ms), "
        f"ours {ours_len} ({(ours_len - exact) / 8:+.1f} ms)"
    )


if __name__ == "__main__":
    main()
