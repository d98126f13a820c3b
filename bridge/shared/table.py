"""The shared facts of a deployment, in memory: the pure table behind every store.

What must hold across the processes that serve one phone number (workers, replicas) is
small: single-use keys (a stream token's nonce), facts one request leaves for another (how a
stream ended, for its `<Connect>` action), and the set of live calls (one stream per
CallSid, and the deployment-wide count behind `MAX_DEPLOYMENT_CALLS`). Every entry has an
expiry, so a process that dies without cleaning up leaves nothing for ever; time is passed
in. Redis holds the same shapes with the same rules (`bridge.shared.redis_store`); this
table is the store of one process and the one a worker supervisor shares among its workers
(`bridge.shared.host`).
"""

from __future__ import annotations

from collections import OrderedDict

MAX_ENTRIES = 100_000
"""Keys and facts together: past it the oldest go first, so nobody can grow the table."""
MAX_VALUE_BYTES = 64 * 1024
"""A fact is a few dozen bytes (an outcome, a transfer target); a larger one is refused."""

DUPLICATE = "a stream for this call is already live"
AT_CAPACITY = "deployment at capacity"


class StateTable:
    """Keys with expiries and the live calls, each call a lease renewed while it lasts."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._calls: dict[str, float] = {}  # CallSid → lease expiry

    # -- keys and facts ------------------------------------------------------------------

    def claim(self, key: str, ttl_s: float, now: float) -> bool:
        """Take `key` if nobody holds it (a single-use nonce): True the first time only."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return False
        self._store(key, b"", now + ttl_s, now)
        return True

    def put(self, key: str, value: bytes, ttl_s: float, now: float) -> None:
        if len(value) > MAX_VALUE_BYTES:
            raise ValueError(f"a shared fact is at most {MAX_VALUE_BYTES} bytes")
        self._entries.pop(key, None)
        self._store(key, value, now + ttl_s, now)

    def take(self, key: str, now: float) -> bytes | None:
        """The fact under `key`, once; None when there is none (or it lapsed)."""
        entry = self._entries.pop(key, None)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def _store(self, key: str, value: bytes, expires_at: float, now: float) -> None:
        entries = self._entries
        entries[key] = (expires_at, value)
        entries.move_to_end(key)
        # Entries share a few lifetimes, so the oldest are mostly the first to lapse.
        while entries and next(iter(entries.values()))[0] <= now:
            entries.popitem(last=False)
        while len(entries) > self._max:
            entries.popitem(last=False)

    # -- live calls ----------------------------------------------------------------------

    def join(self, call_sid: str, limit: int | None, lease_s: float, now: float) -> str | None:
        """Count a call in; None when it joined, else why not (`DUPLICATE`, `AT_CAPACITY`)."""
        self._expire_calls(now)
        if call_sid in self._calls:
            return DUPLICATE
        if limit is not None and len(self._calls) >= limit:
            return AT_CAPACITY
        self._calls[call_sid] = now + lease_s
        return None

    def renew(self, call_sids: list[str], lease_s: float, now: float) -> None:
        """Extend the leases of calls still live (a lapsed one is counted again)."""
        for call_sid in call_sids:
            self._calls[call_sid] = now + lease_s

    def holds(self, call_sid: str) -> bool:
        return call_sid in self._calls

    def leave(self, call_sid: str) -> None:
        self._calls.pop(call_sid, None)

    def live_calls(self, now: float) -> int:
        self._expire_calls(now)
        return len(self._calls)

    def _expire_calls(self, now: float) -> None:
        lapsed = [sid for sid, until in self._calls.items() if until <= now]
        for sid in lapsed:
            del self._calls[sid]
