"""Two bridge processes (two replicas) sharing a real Redis through `REDIS_URL`: a stream
token is used once in the deployment, a stream's outcome reaches the `<Connect>` action on
the other replica, `MAX_DEPLOYMENT_CALLS` counts both, and Redis going down mid-call
drops nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from bridge.sim import CallRejected, TwilioMediaStream, continue_after_stream, place_call
from tests.conftest import free_port, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say
from tests.shared.processes import BridgeProcess, bridge_process
from tests.shared.redis_server import RedisServer

TOKEN = "twilio-auth-token-0123456789abcdef"


@contextmanager
def two_replicas(
    fake: FakeRealtimeServer, folder: Path, redis_url: str | None, **extra: str
) -> Iterator[tuple[BridgeProcess, BridgeProcess]]:
    """Replicas A and B behind one public URL (A's address: what Twilio signs)."""
    port_a = free_port()
    env = {
        "OPENAI_API_KEY": "sk-test-0123456789",
        "REALTIME_URL": fake.url,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "PUBLIC_URL": f"http://127.0.0.1:{port_a}",
        "DRAIN_TIMEOUT_SECONDS": "1",
        **({"REDIS_URL": redis_url} if redis_url else {}),
        **extra,
    }
    with ExitStack() as stack:
        a = stack.enter_context(bridge_process(env, folder / "a", port_a))
        b = stack.enter_context(bridge_process(env, folder / "b"))
        yield a, b


def on(bridge: BridgeProcess) -> dict[str, str]:
    """Open a stream on `bridge` (the load balancer's choice), still signed as Twilio signs
    it: for the public URL."""
    return {"connect_url": bridge.ws_url}


async def _replayed_on_b(a: BridgeProcess, b: BridgeProcess) -> int | None:
    target = await place_call(a.base_url, auth_token=TOKEN)
    async with TwilioMediaStream(target, auth_token=TOKEN) as first:
        await wait_until(lambda: first.played_ms_total >= 100, 10, "the greeting")
    # The same `start` again, token and all, to the other replica.
    replay = TwilioMediaStream(target, auth_token=TOKEN, **on(b))
    await replay.connect()
    try:
        info = await asyncio.wait_for(asyncio.shield(replay.closed), 1.5)
    except TimeoutError:  # taken: the call goes on
        await wait_until(lambda: replay.played_ms_total >= 100, 10, "the replay's greeting")
        await replay.stop()
        return None
    finally:
        await replay.aclose(raise_errors=False)
    return info.code


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "no_redis"])
async def test_a_token_replayed_on_another_replica_is_refused_with_redis(
    redis: RedisServer, tmp_path: Path, shared: bool
) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello", 300)]]) as fake:
        with two_replicas(fake, tmp_path, redis.url if shared else None) as (a, b):
            code = await _replayed_on_b(a, b)
            if shared:
                await b.wait_events("stream_rejected")
            else:
                await b.wait_events("call_started")
            sessions = len(fake.sessions)
            rejected = [e["reason"] for e in b.events("stream_rejected")]
    if shared:
        assert code == 1008 and sessions == 1
        assert rejected == ["stream token already used"]
    else:  # each replica alone: what a deployment without REDIS_URL cannot see
        assert code is None and sessions == 2 and rejected == []


async def test_the_connect_action_on_the_other_replica_follows_the_streams_outcome(
    redis: RedisServer, tmp_path: Path
) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello", 300)]]) as fake:
        with two_replicas(fake, tmp_path, redis.url) as (a, b):
            target = await place_call(a.base_url, auth_token=TOKEN)
            async with TwilioMediaStream(target, auth_token=TOKEN) as stream:
                await wait_until(lambda: stream.played_ms_total >= 100, 10, "the greeting")
            # The caller hung up: a deliberate end. Twilio's action request lands on B.
            assert target.action is not None
            after = await continue_after_stream(
                target,
                auth_token=TOKEN,
                sign_url=target.action,
                post_url=target.action.replace(a.base_url, b.base_url),
            )
            [ended] = await b.wait_events("stream_ended")
    assert after.via == "action" and [v.name for v in after.verbs] == ["Hangup"]
    assert ended["then"] == "hangup"


async def test_the_deployments_cap_counts_the_calls_of_every_replica(
    redis: RedisServer, tmp_path: Path
) -> None:
    async with FakeRealtimeServer("ga", [[Say("A long greeting.", 8000)]], speed=1.0) as fake:
        with two_replicas(fake, tmp_path, redis.url, MAX_DEPLOYMENT_CALLS="1") as (a, b):
            first = await place_call(a.base_url, auth_token=TOKEN)
            early = await place_call(
                b.base_url, auth_token=TOKEN, sign_base=a.base_url
            )  # answered while idle
            async with TwilioMediaStream(first, auth_token=TOKEN) as live:
                await wait_until(lambda: live.played_ms_total >= 200, 10, "the first call")
                # B's webhook sees A's call: busy.
                with pytest.raises(CallRejected) as busy:
                    await place_call(b.base_url, auth_token=TOKEN, sign_base=a.base_url)
                assert busy.value.verbs == ("Say", "Hangup")
                # A stream whose webhook came before is refused at its start: 1013.
                late = TwilioMediaStream(early, auth_token=TOKEN, **on(b))
                await late.connect()
                info = await asyncio.wait_for(late.closed, 10)
                await late.aclose(raise_errors=False)
                assert info.code == 1013
                assert live.played_ms_total > 0
            await asyncio.sleep(0.3)
            # The first call is over: its place is free for B.
            again = await place_call(b.base_url, auth_token=TOKEN, sign_base=a.base_url)
            async with TwilioMediaStream(again, auth_token=TOKEN, **on(b)) as third:
                await wait_until(lambda: third.played_ms_total >= 200, 10, "a call on B")
            reasons = [e["reason"] for e in await b.wait_events("stream_rejected")]
            busy_lines = [e["reason"] for e in await b.wait_events("call_rejected")]
    assert reasons == ["deployment at capacity"]
    assert busy_lines == ["deployment at capacity"]


async def test_redis_going_down_mid_call_drops_nothing_and_new_calls_carry_on(
    redis: RedisServer, tmp_path: Path
) -> None:
    async with FakeRealtimeServer("ga", [[Say("A long greeting.", 8000)]], speed=1.0) as fake:
        with two_replicas(fake, tmp_path, redis.url) as (a, _b):
            target = await place_call(a.base_url, auth_token=TOKEN)
            async with TwilioMediaStream(target, auth_token=TOKEN) as live:
                await wait_until(lambda: live.played_ms_total >= 300, 10, "the greeting")
                redis.stop()
                heard = live.played_ms_total
                # A new call while Redis is down: the single-process behaviour, no refusal.
                second = await place_call(a.base_url, auth_token=TOKEN)
                async with TwilioMediaStream(second, auth_token=TOKEN) as other:
                    await wait_until(lambda: other.played_ms_total >= 300, 10, "a new call")
                await asyncio.sleep(1.0)
                assert live.played_ms_total >= heard + 800  # the live call went on
                assert live.closed.done() is False
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient() as client:
                metrics = (await client.get(f"{a.base_url}/metrics")).text
            down = await a.wait_events("shared_state_unavailable")
            ended = [e["reason"] for e in await a.wait_events("call_ended", 2)]
    assert len(down) == 1 and down[0]["store"] == "redis"
    assert "redis" in a.events("shared_state")[0]["store"]
    assert ended == ["caller_hangup", "caller_hangup"]
    fallbacks = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("voicebridge_shared_state_fallbacks_total{")
    ]
    assert sum(fallbacks) >= 3  # the second call's token, its join, an outcome or two
