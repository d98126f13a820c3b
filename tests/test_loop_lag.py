"""The event loop's lateness: measured against when the timer was due, exported and logged."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from bridge import loop_lag, metrics
from tests.conftest import LogCapture, make_settings, running_bridge, wait_until

BLOCK_S = 0.3


def hold_the_loop() -> None:
    """What a blocking call on the event loop does: nothing else runs meanwhile."""
    time.sleep(BLOCK_S)


async def test_a_blocked_loop_is_measured_as_late_as_it_was_held(logs: LogCapture) -> None:
    interval = 0.05
    samples: list[float] = []
    watcher = asyncio.create_task(loop_lag.watch_loop_lag(interval, samples.append))
    try:
        await wait_until(lambda: len(samples) >= 3, 5, "the first samples")
        quiet = len(samples)
        hold_the_loop()
        await wait_until(lambda: len(samples) > quiet, 5, "the sample after the block")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    late = samples[quiet]
    # The timer was due at most `interval` after the block began and ran after it ended.
    assert BLOCK_S - interval - 0.005 <= late < BLOCK_S + 0.5
    # Lateness, not the period: an idle loop runs its timer on time (the least of the quiet
    # samples; one may be late on a busy machine).
    assert 0.0 <= min(samples[:quiet]) < interval / 2
    stalled = logs.events("event_loop_stalled")
    # One line per sample over the threshold, each with the lag it measured.
    assert [r["lag_ms"] for r in stalled] == [
        round(s * 1000.0, 1) for s in samples if s >= loop_lag.STALL_S
    ]
    assert stalled[-1]["level"] == "warning"
    assert stalled[-1]["lag_ms"] >= (BLOCK_S - interval) * 1000.0 - 5


async def test_the_served_app_exports_the_loop_lag_on_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loop_lag, "INTERVAL_S", 0.05)
    name = "voicebridge_event_loop_lag_seconds"

    def value(suffix: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name + suffix, labels or None) or 0.0

    def over_025() -> float:
        return value("_count") - value("_bucket", le="0.25")

    async with running_bridge(make_settings()) as bridge:
        await wait_until(lambda: value("_count") >= 1, 5, "a first sample")
        count, over, under_1s = value("_count"), over_025(), value("_bucket", le="1.0")
        hold_the_loop()
        await wait_until(lambda: value("_count") > count, 5, "the sample after the block")
        async with httpx.AsyncClient() as client:
            exposed = (await client.get(f"{bridge.base_url}/metrics")).text
    # Exactly the block's sample landed above 0.25 s, and every new one below 1 s; the
    # histogram is the process's, so earlier tests' samples are subtracted.
    assert over_025() == over + 1
    assert value("_bucket", le="1.0") - under_1s == value("_count") - count
    assert f"{name}_count" in exposed
    assert f'{name}_bucket{{le="0.25"}}' in exposed
