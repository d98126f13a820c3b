"""The workers of one machine share what replicas share through Redis, without Redis: the
supervisor's table. Connections reach a worker at random (the kernel's SO_REUSEPORT hash),
so with ten calls the `<Connect>` action and a replayed `start` land on the other worker
than the call's stream about half the time: each of those would go wrong without the table
(the fallback after a deliberate end, a second call on one token)."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.sim import TwilioMediaStream, continue_after_stream, place_call
from tests.conftest import free_port, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say
from tests.test_workers import fake_env, serve_group

TOKEN = "twilio-auth-token-0123456789abcdef"
CALLS = 10


async def test_the_workers_share_token_use_and_stream_outcomes(tmp_path: Any) -> None:
    port = free_port()
    async with FakeRealtimeServer("ga", [[Say("Hello", 200)]]) as fake:
        env = fake_env(fake, TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_URL=f"http://127.0.0.1:{port}")
        with serve_group(env, tmp_path, port=port) as group:
            actions, replays, sids = [], [], []
            for _ in range(CALLS):
                target = await place_call(group.base, auth_token=TOKEN)
                sids.append(target.call_sid)
                async with TwilioMediaStream(target, auth_token=TOKEN) as stream:
                    await wait_until(lambda s=stream: s.played_ms_total >= 100, 10, "audio")
                after = await continue_after_stream(target, auth_token=TOKEN)
                actions.append([verb.name for verb in after.verbs])
                replay = TwilioMediaStream(target, auth_token=TOKEN)
                await replay.connect()
                info = await asyncio.wait_for(replay.closed, 10)
                await replay.aclose(raise_errors=False)
                replays.append(info.code)
            for name in ("stream_ended", "stream_rejected"):
                await wait_until(lambda n=name: len(group.events(n)) >= CALLS, 5, name)
            ended = group.events("stream_ended")
            rejected = group.events("stream_rejected")
            hosted = group.events("shared_state")
            served = {sid: group.worker_of(sid) for sid in sids}
    assert actions == [["Hangup"]] * CALLS
    assert [e["then"] for e in ended] == ["hangup"] * CALLS
    assert replays == [1008] * CALLS
    assert [e["reason"] for e in rejected] == ["stream token already used"] * CALLS
    assert len(fake.sessions) == CALLS
    assert sorted(e["worker"] for e in hosted) == [1, 2]
    assert {e["store"] for e in hosted} == {"supervisor"}
    print("workers that served the ten calls:", served)
