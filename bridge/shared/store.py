"""Where the deployment's shared facts live: this process, the worker supervisor, or Redis.

`SharedStore` is what the routes and the media streams await; `LocalStore` is the table of
one process (the default, as before any sharing), `bridge.shared.host.HostedStore` the
table the supervisor of `serve --workers N` holds for its workers, and
`bridge.shared.redis_store.RedisStore` Redis (`REDIS_URL`) for replicas.

A shared store can fail while calls are live. `Resilient` puts this process's own table
behind it: an operation the shared store cannot do is done in memory instead, so nothing a
live call does waits on it or fails with it, and a new call gets the single-process
behaviour (its token single-use on this process only, the cap this process's own) until the
store answers again. The outage is logged once (`shared_state_unavailable`, then
`shared_state_restored`) and every operation served from memory is counted
(`voicebridge_shared_state_fallbacks_total`). After a failure the shared store is left alone
for `RETRY_AFTER_S`, so a store that hangs costs one timeout per few seconds, not one per
request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from bridge import metrics
from bridge.errors import describe
from bridge.logs import get_logger
from bridge.shared.table import StateTable

log = get_logger("voicebridge.shared")

T = TypeVar("T")

RETRY_AFTER_S = 2.0
CALL_LEASE_S = 30.0
"""A live call's place in the count lasts this long unless renewed (every third of it): a
process that dies stops counting within it."""


class SharedStore(Protocol):
    """Single-use keys, facts taken once, and the live calls; every entry expires."""

    name: str
    where: str
    """Its address for the logs (a Redis URL without its password, a socket path)."""

    async def ping(self) -> None: ...

    async def claim(self, key: str, ttl_s: float) -> bool: ...

    async def put(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def take(self, key: str) -> bytes | None: ...

    async def join(self, call_sid: str, limit: int | None) -> str | None: ...

    async def renew(self, call_sids: list[str]) -> None: ...

    async def leave(self, call_sid: str) -> None: ...

    async def live_calls(self) -> int: ...

    async def aclose(self) -> None: ...


class LocalStore:
    """The table of this process alone."""

    name = "memory"
    where = ""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.table = StateTable()
        self._clock = clock

    async def ping(self) -> None:
        pass

    async def claim(self, key: str, ttl_s: float) -> bool:
        return self.table.claim(key, ttl_s, self._clock())

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self.table.put(key, value, ttl_s, self._clock())

    async def take(self, key: str) -> bytes | None:
        return self.table.take(key, self._clock())

    async def join(self, call_sid: str, limit: int | None) -> str | None:
        return self.table.join(call_sid, limit, CALL_LEASE_S, self._clock())

    async def renew(self, call_sids: list[str]) -> None:
        self.table.renew(call_sids, CALL_LEASE_S, self._clock())

    async def leave(self, call_sid: str) -> None:
        self.table.leave(call_sid)

    async def live_calls(self) -> int:
        return self.table.live_calls(self._clock())

    async def aclose(self) -> None:
        pass


class Resilient:
    """A shared store with this process's memory behind it (see the module's docstring)."""

    def __init__(
        self,
        shared: SharedStore,
        local: LocalStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.local = local or LocalStore()
        self.name = shared.name
        self._clock = clock
        self._down_since: float | None = None
        self._retry_at = 0.0

    async def report(self) -> None:
        """At start-up: where the state is shared, and whether it answers (a store that is
        down is no reason not to start: its operations go to memory until it answers)."""
        fields: dict[str, object] = {"store": self.name, "url": self.shared.where}
        try:
            await self.shared.ping()
            fields["reachable"] = True
        except Exception as exc:  # down, refused, a wrong password: logged, not fatal
            fields.update(reachable=False, error=describe(exc))
        (log.info if fields["reachable"] else log.warning)("shared_state", **fields)

    @property
    def available(self) -> bool:
        """False while the shared store is failing (operations go to memory)."""
        return self._down_since is None

    async def _do(
        self, operation: str, shared: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]
    ) -> T:
        now = self._clock()
        if self._down_since is None or now >= self._retry_at:
            try:
                result = await shared()
            except Exception as exc:  # any failure of the store: refused, timeout, protocol
                self._failed(operation, exc, now)
            else:
                if self._down_since is not None:
                    log.info(
                        "shared_state_restored",
                        store=self.name,
                        down_s=round(now - self._down_since, 3),
                    )
                    self._down_since = None
                return result
        metrics.SHARED_STATE_FALLBACKS.labels(operation=operation).inc()
        return await local()

    def _failed(self, operation: str, exc: Exception, now: float) -> None:
        self._retry_at = now + RETRY_AFTER_S
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "shared_state_unavailable",
                store=self.name,
                operation=operation,
                error=describe(exc),
                then="in-process memory until it answers",
            )

    async def claim(self, key: str, ttl_s: float) -> bool:
        return await self._do(
            "claim",
            lambda: self.shared.claim(key, ttl_s),
            lambda: self.local.claim(key, ttl_s),
        )

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._do(
            "put",
            lambda: self.shared.put(key, value, ttl_s),
            lambda: self.local.put(key, value, ttl_s),
        )

    async def take(self, key: str) -> bytes | None:
        value = await self._do("take", lambda: self.shared.take(key), lambda: self.local.take(key))
        if value is None:  # left here while the store was down
            value = await self.local.take(key)
        return value

    async def join(self, call_sid: str, limit: int | None) -> str | None:
        return await self._do(
            "join",
            lambda: self.shared.join(call_sid, limit),
            lambda: self.local.join(call_sid, limit),
        )

    async def renew(self, call_sids: list[str]) -> None:
        await self.local.renew([sid for sid in call_sids if self.local.table.holds(sid)])
        await self._do("renew", lambda: self.shared.renew(call_sids), _nothing)

    async def leave(self, call_sid: str) -> None:
        await self.local.leave(call_sid)
        await self._do("leave", lambda: self.shared.leave(call_sid), _nothing)

    async def live_calls(self) -> int:
        return await self._do("count", self.shared.live_calls, self.local.live_calls)

    async def aclose(self) -> None:
        try:
            await self.shared.aclose()
        except Exception as exc:  # closing a store that is down
            log.debug("shared_state_close_failed", error=describe(exc))


async def _nothing() -> None:
    return None
