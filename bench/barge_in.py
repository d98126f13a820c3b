"""Barge-in benchmark: reaction time and truncation accuracy over many interruptions.

Runs the real bridge under uvicorn, the fake Realtime server (unpaced, like the hosted
service) and real-time fake Twilio callers in one process on loopback. Each caller lets the
agent talk for a random part of a random-length answer, then speaks over it. For every
barge-in it compares the bridge's `audio_end_ms` with what the caller had truly played when
`clear` arrived, and takes the bridge's own reaction time (speech_started received → clear
sent) from its `barge_in` log line.

    .venv/bin/python bench/barge_in.py [--calls 10] [--per-call 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bridge.logs import configure_logging
from bridge.sim import TwilioMediaStream, place_call
from bridge.sim.audio import speech_like
from tests.conftest import LogCapture, make_settings, running_bridge, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say


async def one_call(
    base_url: str, fake: FakeRealtimeServer, lengths: list[int], rng: random.Random, session_no: int
) -> list[tuple[float, float]]:
    """Returns (audio_end_ms, truly heard ms) per barge-in."""
    target = await place_call(base_url)
    async with TwilioMediaStream(target) as stream:
        session = await fake.wait_for_session(session_no, timeout=10)
        for k, length in enumerate(lengths[:-1]):
            base = stream.clears[-1].played_ms_total if stream.clears else 0.0
            point = rng.uniform(200, length - 400)
            await wait_until(lambda b=base, p=point: stream.played_ms_total - b >= p, 15)
            stream.say(speech_like(300, seed=k))
            await wait_until(lambda k=k: len(stream.clears) > k, 10)
            await wait_until(
                lambda k=k: len(session.client_events("conversation.item.truncate")) > k, 5
            )
        truncates = session.client_events("conversation.item.truncate")
        heard = np.diff([0.0] + [c.played_ms_total for c in stream.clears])
        return [(t["audio_end_ms"], h) for t, h in zip(truncates, heard, strict=False)]


async def run(calls: int, per_call: int, seed: int) -> None:
    logs = LogCapture()
    configure_logging("json", "INFO", stream=logs)
    rng = random.Random(seed)
    scripts = []
    for _ in range(calls):
        lengths = [rng.randrange(1500, 5000, 20) for _ in range(per_call + 1)]
        scripts.append(lengths)
    results: list[tuple[float, float]] = []
    started = time.monotonic()
    # One fake server per call keeps each call's script its own.
    fakes = [
        FakeRealtimeServer(
            "ga",
            [[Say(f"answer {i}", ms)] for i, ms in enumerate(lengths)],
            [f"turn {i}" for i in range(per_call)],
        )
        for lengths in scripts
    ]
    for fake in fakes:
        await fake.start()
    try:
        settings = make_settings(
            OPENAI_API_KEY="sk-bench-0123456789",
            REALTIME_URL=fakes[0].url,
            MAX_CONCURRENT_CALLS=1000,
        )
        async with running_bridge(settings) as bridge:
            tasks = []
            for i, fake in enumerate(fakes):
                # Each call needs its own upstream: point the bridge at that call's fake.
                targets = bridge.services.upstream
                targets._settings = settings.model_copy(update={"REALTIME_URL": fake.url})
                tasks.append(
                    asyncio.create_task(
                        one_call(bridge.base_url, fake, scripts[i], random.Random(seed + i), 1)
                    )
                )
                await fake.wait_for_session(1, timeout=10)
            for result in await asyncio.gather(*tasks):
                results.extend(result)
    finally:
        for fake in fakes:
            await fake.stop()
    elapsed = time.monotonic() - started
    reactions = np.array([r["reaction_ms"] for r in logs.events("barge_in")], dtype=float)
    errors = np.array([abs(end - heard) for end, heard in results], dtype=float)
    signed = np.array([end - heard for end, heard in results], dtype=float)
    violations = sum(len(f.violations) for f in fakes)
    print(
        f"barge-ins: {len(errors)} over {calls} calls in {elapsed:.1f} s; "
        f"fake-server violations: {violations}"
    )
    print(f"{'metric':44} {'p50':>8} {'p99':>8} {'max':>8}  target")
    print(
        f"{'reaction ms (speech_started recv → clear sent)':44} "
        f"{np.percentile(reactions, 50):8.3f} {np.percentile(reactions, 99):8.3f} "
        f"{reactions.max():8.3f}  p99 ≤ 5"
    )
    print(
        f"{'|audio_end_ms − truly played| ms':44} {np.percentile(errors, 50):8.2f} "
        f"{np.percentile(errors, 99):8.2f} {errors.max():8.2f}  p99 ≤ 20"
    )
    print(
        f"{'audio_end_ms − truly played (signed) ms':44} {np.percentile(signed, 50):8.2f} "
        f"{np.percentile(signed, 99):8.2f} {signed.max():8.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--per-call", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.per_call, args.seed))


if __name__ == "__main__":
    main()
