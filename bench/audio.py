"""Cost of the audio core per 20 ms frame, and why chunked `resample_poly` is not used.

Run: `.venv/bin/python bench/audio.py [--frames N]`. Prints µs per 20 ms frame (median and
p99 over N frames) for each stage and for the whole inbound and outbound frame paths: the
compiled kernels (bridge.audio._kernels) next to the pure-numpy path they replaced in #10
(tests/audio/reference.py), what that costs per call-second, then the naive per-chunk
`scipy.signal.resample_poly` with its SNR against whole-signal output. Timings are
wall-clock on a shared machine: run it more than once.
"""

from __future__ import annotations

import argparse
import binascii
import gc
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.audio.reference

from bridge.audio import (
    Framer,
    Resampler8kTo24k,
    Resampler24kTo8k,
    _kernels,
    design_lowpass,
    make_pipeline,
    ulaw_decode,
    ulaw_encode,
)
from bridge.audio.resample import KERNELS
from tests.audio.reference import (
    NumpyPcm16Pipeline,
    NumpyResampler8kTo24k,
    NumpyResampler24kTo8k,
)

FRAME_8K = 160  # samples (and μ-law bytes) per 20 ms at 8 kHz
FRAME_24K = 480  # samples per 20 ms at 24 kHz
#: Per direction and frame (#10): the bridge's budget is 3 ms CPU per call-second, sockets
#: included, and audio runs 50 frames a second each way.
TARGET_US = 3.0


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

    def section(title: str) -> None:
        rows.append((title, np.empty(0), ""))

    target = f"target ≤ {TARGET_US:g} µs median"

    # Inbound: Twilio media payload -> input_audio_buffer.append audio.
    section("inbound, pcm16: Twilio μ-law 8k -> 24k PCM16")
    stage(
        "in: binascii decode (216 chars)",
        lambda s: binascii.a2b_base64(s, strict_mode=True),
        payloads,
    )
    h_up = np.zeros(_kernels.UP_STATE_SHAPE)
    x_up = np.zeros(_kernels.UP_WINDOW_SHAPE)
    istate_up = np.zeros(_kernels.ISTATE_SIZE, dtype=np.int64)
    pcm_out = np.empty(FRAME_24K, dtype=np.int16)
    stage(
        "in: kernel μ-law→24k PCM16 (160→480)",
        lambda u: KERNELS.upsample(u, True, h_up, x_up, istate_up, pcm_out),
        ulaw_frames,
    )
    stage("in: binascii encode (960 B)", b64, up_out)
    binascii_in = make_pipeline("pcm16")
    stage("in: binascii + kernel + binascii", binascii_in._inbound_binascii, payloads)  # type: ignore[attr-defined]
    work_up = np.empty(15 * (FRAME_8K + 3), dtype=np.uint8)
    stage(
        "in: one kernel, base64 inside (216→1280)",
        lambda t: KERNELS.upsample_b64(t, h_up, x_up, istate_up, pcm_out, work_up),
        [p.encode() for p in payloads],
    )
    inbound = make_pipeline("pcm16")
    stage("INBOUND whole frame (pcm16)", inbound.inbound, payloads, target)
    stage("  before #10: μ-law decode (numpy)", ulaw_decode, ulaw_frames)
    stage("  before #10: resample 8k→24k (numpy)", NumpyResampler8kTo24k().process, pcm8_frames)
    stage(
        "  before #10: to bytes + base64 encode",
        lambda a: b64(a.tobytes()),
        [f.repeat(3) for f in pcm8_frames],
    )
    stage("  before #10: INBOUND whole frame", NumpyPcm16Pipeline().inbound, payloads)
    stage("  Resampler8kTo24k.process (160→480)", up.process, pcm8_frames)

    # Outbound: output_audio.delta -> Twilio media frames.
    section("outbound, pcm16: Realtime 24k PCM16 delta -> 20 ms μ-law frames")
    stage(
        "out: binascii decode (1280 chars)",
        lambda s: binascii.a2b_base64(s, strict_mode=True),
        deltas,
    )
    h_down = np.zeros(_kernels.DOWN_STATE_SHAPE)
    x_down = np.zeros(_kernels.DOWN_WINDOW_SHAPE)
    istate_down = np.zeros(_kernels.ISTATE_SIZE, dtype=np.int64)
    codes_out = np.empty(2 * FRAME_8K, dtype=np.uint8)
    stage(
        "out: kernel 24k PCM16→μ-law (480→160)",
        lambda d: KERNELS.downsample(d, h_down, x_down, istate_down, True, codes_out, 0),
        pcm24_bytes,
    )
    commit_framer = Framer()  # as the pipeline uses it: the kernel wrote 160 codes into it
    stage(
        "out: framer + base64 encode (160 B)",
        lambda _: (commit_framer.reserve(161), commit_framer.commit_b64(160)),
        down_out,
    )
    binascii_out = make_pipeline("pcm16")
    stage("out: binascii + kernel + framer", binascii_out._outbound_binascii, deltas)  # type: ignore[attr-defined]
    work_down = np.empty(FRAME_24K * 2, dtype=np.uint8)
    stage(
        "out: one kernel, base64 inside (1280→160)",
        lambda t: KERNELS.downsample_b64(t, h_down, x_down, istate_down, work_down, codes_out, 0),
        [d.encode() for d in deltas],
    )
    outbound = make_pipeline("pcm16")
    stage("OUTBOUND whole frame (pcm16)", outbound.outbound, deltas, target)

    # Real deltas are not 20 ms each: time uneven ones (odd byte counts too), per 20 ms.
    rng = np.random.default_rng(3)
    cuts = np.cumsum(rng.integers(1, 4 * 960, size=len(pcm24) * 2 // 960))
    whole = pcm24.tobytes()
    cuts = cuts[cuts < len(whole)]
    uneven = [b64(c) for c in np.split(np.frombuffer(whole, np.uint8), cuts)]
    audio_frames = sum(len(binascii.a2b_base64(u)) for u in uneven) / 960.0
    for label, pipe in [("", make_pipeline("pcm16")), ("  before #10: ", NumpyPcm16Pipeline())]:
        per_delta = time_per_call(pipe.outbound, uneven)
        rows.append(
            (
                f"{label}OUTBOUND uneven deltas /20 ms",
                np.array([per_delta.sum() / audio_frames]),
                f"total / frames; {len(uneven)} deltas of 1–3839 B, median"
                f" {np.median(per_delta):.1f} µs each",
            )
        )
    stage("  before #10: resample 24k→8k (numpy)", NumpyResampler24kTo8k().process, pcm24_frames)
    stage(
        "  before #10: μ-law encode (numpy)",
        ulaw_encode,
        [np.frombuffer(b, np.int16) for b in up_out],
    )
    stage("  before #10: framer (160 B)", framer.push, down_out)
    stage("  before #10: OUTBOUND whole frame", NumpyPcm16Pipeline().outbound, deltas)
    stage("  Resampler24kTo8k.process (480→160)", down.process, pcm24_frames)

    section("pcmu: μ-law both sides, outbound still framed")
    passthrough = make_pipeline("pcmu")
    stage("inbound whole frame (pcmu)", passthrough.inbound, payloads, target)
    stage(
        "outbound whole frame (pcmu)",
        passthrough.outbound,
        [b64(u) for u in down_out],
        f"{target}; 160 B deltas pass through",
    )
    three = [b64(b"".join(down_out[i : i + 3])) for i in range(0, len(down_out) - 2, 3)]
    per_delta = time_per_call(make_pipeline("pcmu").outbound, three)
    rows.append(
        (
            "outbound 480 B deltas (pcmu), per 20 ms",
            per_delta / 3,
            "each delta re-encoded as 3 frames",
        )
    )

    # The naive way: a fresh resample_poly per 20 ms chunk.
    section("naive: a fresh scipy resample_poly per 20 ms frame")
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
    exact_up = signal.upfirdn(3 * design_lowpass(), pcm8.astype(np.float64), up=3)
    exact_down = np.convolve(pcm24.astype(np.float64), design_lowpass())[2::3]
    vs_exact = [
        int(np.abs(ours.astype(int) - np.clip(np.rint(ref[: len(ours)]), -32768, 32767)).max())
        for ours, ref in [(ours_up, exact_up), (ours_down, exact_down)]
    ]
    old_up = NumpyResampler8kTo24k().process(pcm8)
    old_down = NumpyResampler24kTo8k().process(pcm24)
    vs_old = [
        (int(np.abs(ours.astype(int) - old).max()), np.count_nonzero(ours != old) / len(ours))
        for ours, old in [(ours_up, old_up), (ours_down, old_down)]
    ]

    # Length drift when chunks are not multiples of 3 (deltas of 1001 samples, 24k → 8k).
    odd_chunks = [pcm24[i : i + 1001] for i in range(0, len(pcm24), 1001)]
    naive_len = sum(len(signal.resample_poly(c, 1, 3)) for c in odd_chunks)
    r3 = Resampler24kTo8k()
    ours_len = sum(len(r3.process(c)) for c in odd_chunks)
    exact = len(pcm24) // 3

    print(f"audio core, µs per 20 ms frame, {n} frames per stage ({seconds:.0f} s of audio)")
    print(f"kernel cache: {_kernels.cache_status()}")
    print()
    print(f"{'stage':<42} {'median':>8} {'p99':>8}  note")
    print("-" * 92)
    medians: dict[str, float] = {}
    for name, us, note in rows:
        if not len(us):
            print(f"[{name}]")
            continue
        med = float(np.median(us))
        medians[name] = med
        if "target" in note:
            note = f"{note}: {'MET' if med <= TARGET_US else 'MISSED'}"
        p99 = f"{np.percentile(us, 99):8.1f}" if len(us) > 1 else f"{'-':>8}"
        print(f"{name:<42} {med:8.2f} {p99}  {note}")
    print()
    per_second = {
        "pcm16 now": medians["INBOUND whole frame (pcm16)"]
        + medians["OUTBOUND whole frame (pcm16)"],
        "pcm16 before #10": medians["  before #10: INBOUND whole frame"]
        + medians["  before #10: OUTBOUND whole frame"],
        "pcmu": medians["inbound whole frame (pcmu)"] + medians["outbound whole frame (pcmu)"],
    }
    binascii_path = (
        medians["in: binascii + kernel + binascii"] + medians["out: binascii + kernel + framer"]
    )
    print("CPU per call-second (50 frames each way; budget 3 ms for the whole bridge):")
    for label, us in per_second.items():
        print(f"  {label:<17} {50 * us / 1000:.3f} ms")
    print(f"  pcm16 with binascii around the kernels {50 * binascii_path / 1000:.3f} ms")
    print()
    print("streaming resamplers, chunked by 20 ms vs one call on the whole signal:")
    print(f"  8k→24k max diff {max_up} LSB, 24k→8k max diff {max_down} LSB")
    print(
        f"  vs the exact (float64) filter output: 8k→24k {vs_exact[0]} LSB,"
        f" 24k→8k {vs_exact[1]} LSB"
    )
    print(
        f"  vs the numpy path before #10 (float32): 8k→24k {vs_old[0][0]} LSB"
        f" ({100 * vs_old[0][1]:.3f} % of samples), 24k→8k {vs_old[1][0]} LSB"
        f" ({100 * vs_old[1][1]:.3f} % of samples)"
    )
    print(f"  group delay: 8k→24k {up.group_delay_ms:.3f} ms, 24k→8k {down.group_delay_ms:.3f} ms")
    print(f"length after {seconds:.0f} s in 1001-sample deltas (24k→8k), exact is {exact}:")
    print(
        f"  naive resample_poly {naive_len} ({(naive_len - exact) / 8:+.1f} ms), "
        f"ours {ours_len} ({(ours_len - exact) / 8:+.1f} ms)"
    )


if __name__ == "__main__":
    main()
