"""The shared facts in Redis (`REDIS_URL`), for replicas on several machines.

The same shapes as `bridge.shared.table.StateTable`, under keys that start with
`voicebridge:`: a single-use key is `SET NX PX`, a fact `SET PX` and `GETDEL` (Redis 6.2 or
newer), and the live calls one sorted set, each CallSid scored by its lease's expiry (Unix
seconds), so a replica that dies stops counting once its leases lapse. Joining is one Lua
script (drop the lapsed, refuse a CallSid already there, refuse past the limit, add), so two
replicas cannot both take the last place. Every command is bounded by `TIMEOUT_S`; a failure
raises, and `bridge.shared.store.Resilient` answers from memory instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bridge.shared.store import CALL_LEASE_S
from bridge.shared.table import AT_CAPACITY, DUPLICATE, MAX_VALUE_BYTES

PREFIX = "voicebridge:"
CALLS_KEY = PREFIX + "calls"
TIMEOUT_S = 0.5
"""Connecting and each command: Redis on the same network answers in a millisecond."""

_JOIN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
local limit = tonumber(ARGV[4])
if limit >= 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 2 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 0
"""


def safe_url(url: str) -> str:
    """`url` without its password, for the logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class RedisStore:
    name = "redis"

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self.where = safe_url(url)
        self._clock = clock
        self._redis = aioredis.from_url(
            url,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            retry=Retry(NoBackoff(), 1),  # once, for a connection a Redis restart closed
            health_check_interval=30,
        )
        self._join = self._redis.register_script(_JOIN)

    async def ping(self) -> None:
        await self._redis.ping()

    async def claim(self, key: str, ttl_s: float) -> bool:
        done = await self._redis.set(PREFIX + key, b"", nx=True, px=_ms(ttl_s))
        return bool(done)

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        if len(value) > MAX_VALUE_BYTES:
            raise ValueError(f"a shared fact is at most {MAX_VALUE_BYTES} bytes")
        await self._redis.set(PREFIX + key, value, px=_ms(ttl_s))

    async def take(self, key: str) -> bytes | None:
        value = await self._redis.getdel(PREFIX + key)
        return bytes(value) if value is not None else None

    async def join(self, call_sid: str, limit: int | None) -> str | None:
        now = self._clock()
        args = [f"{now:.3f}", call_sid, f"{now + CALL_LEASE_S:.3f}", -1 if limit is None else limit]
        answer = int(await self._join(keys=[CALLS_KEY], args=args))
        return {0: None, 1: DUPLICATE, 2: AT_CAPACITY}[answer]

    async def renew(self, call_sids: list[str]) -> None:
        if call_sids:
            until = self._clock() + CALL_LEASE_S
            await self._redis.zadd(CALLS_KEY, dict.fromkeys(call_sids, until))

    async def leave(self, call_sid: str) -> None:
        await self._redis.zrem(CALLS_KEY, call_sid)

    async def live_calls(self) -> int:
        return int(await self._redis.zcount(CALLS_KEY, f"({self._clock():.3f}", "+inf"))

    async def aclose(self) -> None:
        await self._redis.aclose()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
