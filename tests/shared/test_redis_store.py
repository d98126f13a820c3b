"""The shared facts in a real Redis: the same rules as the in-memory table."""

from __future__ import annotations

import asyncio

import pytest
from redis import exceptions as redis_errors

from bridge.shared.redis_store import RedisStore, safe_url
from bridge.shared.table import AT_CAPACITY, DUPLICATE
from tests.shared.redis_server import RedisServer


async def test_keys_facts_and_calls_in_redis(redis: RedisServer) -> None:
    now = [1_000_000.0]
    a, b = RedisStore(redis.url, clock=lambda: now[0]), RedisStore(redis.url, clock=lambda: now[0])
    try:
        # Single use across two clients (two replicas).
        assert await a.claim("token:n1", 60.0) is True
        assert await b.claim("token:n1", 60.0) is False
        # A fact left by one is taken once by the other.
        await a.put("fact:outcome:CA1", b'{"then":"hangup"}', 600.0)
        assert await b.take("fact:outcome:CA1") == b'{"then":"hangup"}'
        assert await a.take("fact:outcome:CA1") is None
        # One stream per CallSid and the cap, whoever asks.
        assert await a.join("CA1", 2) is None
        assert await b.join("CA1", 2) == DUPLICATE
        assert await b.join("CA2", 2) is None
        assert await a.join("CA3", 2) == AT_CAPACITY
        assert await a.live_calls() == 2
        # A replica that died stops counting once its leases lapse; the living one renews.
        now[0] += 20.0
        await a.renew(["CA1"])
        now[0] += 15.0
        assert await b.live_calls() == 1
        assert await b.join("CA3", 2) is None
        await a.leave("CA1")
        assert await a.live_calls() == 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_claim_lapses_with_its_time_to_live(redis: RedisServer) -> None:
    store = RedisStore(redis.url)
    try:
        assert await store.claim("token:short", 0.2) is True
        assert await store.claim("token:short", 0.2) is False
        await asyncio.sleep(0.35)
        assert await store.claim("token:short", 0.2) is True
    finally:
        await store.aclose()


async def test_a_redis_that_is_down_raises_within_the_timeout(redis: RedisServer) -> None:
    store = RedisStore(redis.url)
    try:
        redis.stop()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(redis_errors.ConnectionError, match=r"111|refused"):
            await store.claim("token:x", 60.0)
        assert loop.time() - started < 2.0
    finally:
        await store.aclose()


def test_the_logged_url_hides_the_password() -> None:
    assert safe_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert safe_url("redis://user:s3cret@redis/1") == "redis://user:***@redis/1"
    assert safe_url("redis://redis:6379/0") == "redis://redis:6379/0"
