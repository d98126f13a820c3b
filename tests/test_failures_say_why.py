"""Failures say why: a failed `response.done` carries `status_details.error` (the hosted
service's quota and rate-limit failures do), and the fake sends it so; the bridge logs its
type, code and message instead of an unexplained silence, and `rate_limits.updated` becomes a
metric."""

from __future__ import annotations

import httpx

from tests.conftest import LogCapture, bridged_call
from tests.fakes.realtime import Fail, FakeRealtimeServer


async def test_a_failed_response_logs_its_error_and_rate_limits_are_a_metric(
    logs: LogCapture,
) -> None:
    quota = "You exceeded your current quota, please check your plan and billing details."
    script = [[Fail("insufficient_quota", quota, "insufficient_quota")]]
    async with FakeRealtimeServer("ga", script) as fake:
        async with bridged_call(fake) as (bridge, _stream, session):
            await session.wait_for_event("response.done", 5)
            await logs.wait_for("response_failed")
            async with httpx.AsyncClient() as http:
                exposition = (await http.get(f"{bridge.base_url}/metrics")).text
    (failed,) = logs.events("response_failed")
    assert (failed["error_type"], failed["error_code"], failed["error_message"]) == (
        "insufficient_quota",
        "insufficient_quota",
        quota,
    )
    sent = session.server_events("rate_limits.updated")[0]["rate_limits"]
    remaining = {limit["name"]: limit["remaining"] for limit in sent}
    for name, value in remaining.items():
        assert f'voicebridge_rate_limit_remaining{{limit="{name}"}} {float(value)}' in exposition
