"""The event loop's lateness, watched beside the calls.

Every call's audio is a callback on one event loop, so anything that holds the loop (CPU
saturation, a blocking call that slipped in, a long garbage collection) delays every call at
once. A timer due every `INTERVAL_S` measures it: how late it runs is how long any ready
callback waited. Each sample goes to `voicebridge_event_loop_lag_seconds`; a stall of
`STALL_S` or more is also logged (`event_loop_stalled`, with `lag_ms`), so a gap that callers
heard can be matched to its moment in the logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bridge import metrics
from bridge.logs import get_logger

log = get_logger("voicebridge.loop")

INTERVAL_S = 0.5
# A stall callers hear: five frames of audio, in both directions, for every call.
STALL_S = 0.1


async def watch_loop_lag(
    interval_s: float | None = None, observe: Callable[[float], None] | None = None
) -> None:
    """Sample the running loop's lateness every `interval_s` (default `INTERVAL_S`) into
    `observe` (default the histogram) until cancelled."""
    interval = INTERVAL_S if interval_s is None else interval_s
    record = metrics.EVENT_LOOP_LAG.observe if observe is None else observe
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - due)
        record(lag)
        if lag >= STALL_S:
            log.warning("event_loop_stalled", lag_ms=round(lag * 1000.0, 1))
