"""Calls share their thread's kernel buffers and keep only their filter state.

What must hold: a call's audio never depends on which other calls ran in between, on the
same thread or on others, and a call's own buffers are a small fraction of what they were.
"""

from __future__ import annotations

import base64
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import zip_longest

import numpy as np

from bridge.audio import Pcm16Pipeline, Resampler8kTo24k, Resampler24kTo8k
from bridge.audio.workspace import workspace
from tests.audio.signals import random_spans


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def call_audio(seed: int) -> tuple[list[str], list[str]]:
    """One call's traffic: 1 s of Twilio payloads (noise, so any leaked history shows) and
    1 s of 24 kHz model audio in uneven deltas, odd byte counts included."""
    rng = np.random.default_rng(seed)
    ulaw = rng.integers(0, 256, 8000, dtype=np.uint8).tobytes()
    pcm = (rng.normal(0, 6000, 24000).clip(-32768, 32767).astype("<i2")).tobytes()
    payloads = [b64(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160)]
    deltas = [b64(pcm[a:b]) for a, b in random_spans(len(pcm), rng, 3000)]
    return payloads, deltas


def steps(pipeline: Pcm16Pipeline, seed: int) -> Iterator[list[str]]:
    """The call's work as steps another call can run between: each yields what it made.
    Barge-in (reset) two thirds of the way through the model audio, a flush at the end."""
    payloads, deltas = call_audio(seed)
    for index, (payload, delta) in enumerate(zip_longest(payloads, deltas)):
        made = [] if payload is None else [pipeline.inbound(payload)]
        if delta is not None:
            if index == 2 * len(deltas) // 3:
                pipeline.reset_outbound()
            made += pipeline.outbound(delta)
        yield made
    yield pipeline.flush()


def alone(seed: int) -> list[str]:
    return [text for made in steps(Pcm16Pipeline(), seed) for text in made]


def test_calls_interleaved_on_one_thread_give_exactly_what_each_gives_alone() -> None:
    seeds = (1, 2, 3, 4)
    expected = {seed: alone(seed) for seed in seeds}
    got: dict[int, list[str]] = {seed: [] for seed in seeds}
    running = {seed: steps(Pcm16Pipeline(), seed) for seed in seeds}
    while running:  # one step of each call in turn, as the event loop interleaves calls
        for seed in list(running):
            made = next(running[seed], None)
            if made is None:
                del running[seed]
            else:
                got[seed] += made
    for seed in seeds:
        assert len(got[seed]) == len(expected[seed]) > 90
        assert got[seed] == expected[seed], seed


def test_resamplers_interleaved_with_odd_chunks_give_exactly_what_each_gives_alone() -> None:
    rng = np.random.default_rng(7)
    signals = [rng.integers(-20000, 20000, 4801, dtype=np.int16).astype("<i2") for _ in range(3)]
    for make in (Resampler8kTo24k, Resampler24kTo8k):
        expected = [make().process_bytes(s.tobytes()) for s in signals]
        resamplers = [make() for _ in signals]
        chunks = [
            [s.tobytes()[a:b] for a, b in random_spans(2 * len(s), rng, 700)] for s in signals
        ]
        got = [b"" for _ in signals]
        for row in zip_longest(*chunks):
            for k, chunk in enumerate(row):
                if chunk is not None:
                    got[k] += resamplers[k].process_bytes(chunk)
        assert got == expected, make.__name__


def test_calls_on_several_threads_at_once_give_exactly_what_each_gives_alone() -> None:
    seeds = tuple(range(10, 18))
    expected = {seed: alone(seed) for seed in seeds}
    spaces: set[int] = set()
    lock = threading.Lock()

    def run(seed: int) -> list[str]:
        with lock:
            spaces.add(id(workspace()))
        return alone(seed)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(run, seeds * 3))
    finally:
        sys.setswitchinterval(interval)
    for seed, result in zip(seeds * 3, results, strict=True):
        assert result == expected[seed], seed
    assert len(spaces) == 4  # one workspace per thread
    assert workspace() is workspace()


def test_a_calls_filter_state_is_776_bytes_and_the_working_buffers_are_per_thread() -> None:
    pipeline = Pcm16Pipeline()
    for _made in steps(pipeline, 5):
        pass
    own = 0
    for part in (pipeline._up, pipeline._down):
        own += part._h.nbytes + part._istate.nbytes
    # Histories (22 and 3 × 23 float64) and 2 × 3 integers. Besides, a call keeps only its
    # framer's buffer, where the remainder of a delta waits for the next.
    assert own == 8 * (22 + 3 * 23) + 2 * 8 * 3 == 776
    space = workspace()
    shared = sum(
        getattr(space, name).nbytes
        for name in ("up_window", "down_window", "pcm24k", "work", "pcm_work")
    )
    assert shared > 10 * 1024  # what each call used to allocate (and write every frame)
