"""A shared store that fails: the operation is done in this process's memory instead, the
outage is logged once and the fallbacks counted, and the store is tried again after a pause."""

from __future__ import annotations

from bridge import metrics
from bridge.shared.store import RETRY_AFTER_S, LocalStore, Resilient
from bridge.shared.table import DUPLICATE
from tests.conftest import LogCapture


class FlakyStore(LocalStore):
    """A working store that can be switched off: every operation then raises, as a Redis
    that refuses connections does."""

    name = "flaky"

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")

    async def claim(self, key: str, ttl_s: float) -> bool:
        self._check()
        return await super().claim(key, ttl_s)

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._check()
        await super().put(key, value, ttl_s)

    async def take(self, key: str) -> bytes | None:
        self._check()
        return await super().take(key)

    async def join(self, call_sid: str, limit: int | None) -> str | None:
        self._check()
        return await super().join(call_sid, limit)

    async def renew(self, call_sids: list[str]) -> None:
        self._check()
        await super().renew(call_sids)

    async def leave(self, call_sid: str) -> None:
        self._check()
        await super().leave(call_sid)


def _fallbacks(operation: str) -> float:
    return metrics.SHARED_STATE_FALLBACKS.labels(operation=operation)._value.get()


async def test_an_outage_falls_back_to_memory_is_logged_once_and_counted(
    logs: LogCapture,
) -> None:
    now = [0.0]
    shared = FlakyStore()
    store = Resilient(shared, clock=lambda: now[0])
    assert await store.claim("token:a", 60.0) is True
    assert await store.join("CA1", None) is None

    shared.down = True
    before = _fallbacks("claim"), _fallbacks("join"), _fallbacks("put")
    assert await store.claim("token:b", 60.0) is True  # in memory
    assert await store.claim("token:b", 60.0) is False  # still single use on this process
    assert await store.join("CA2", None) is None
    assert await store.join("CA2", None) == DUPLICATE
    await store.put("fact:outcome:CA2", b"h", 600.0)
    await store.renew(["CA1", "CA2"])  # never raises
    await store.leave("CA1")
    assert not store.available
    assert shared.calls == 3  # one failure, then the store is left alone for a while
    after = _fallbacks("claim"), _fallbacks("join"), _fallbacks("put")
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 2, 1]
    [down] = logs.events("shared_state_unavailable")
    assert down["store"] == "flaky" and "Connection refused" in down["error"]

    # Back: the next operation after the pause reaches it, and a fact left in memory
    # during the outage is still found.
    shared.down = False
    now[0] += RETRY_AFTER_S
    assert await store.take("fact:outcome:CA2") == b"h"
    assert store.available
    [restored] = logs.events("shared_state_restored")
    assert restored["down_s"] == RETRY_AFTER_S
    assert await store.claim("token:a", 60.0) is False  # the shared store's own memory
