"""The shared facts of `serve --workers N` without Redis: one table in the supervisor.

The workers of one machine share what replicas share through Redis (a stream token used
once, a stream's outcome for the `<Connect>` action that may reach another worker, one
stream per CallSid, the machine's count of live calls). The supervisor holds the one
`StateTable` and serves it on a Unix socket in its private folder with the standard
library's `multiprocessing.managers` (authenticated by a random key it hands its workers);
each worker's `HostedStore` calls it from a thread (`asyncio.to_thread`), never on the event
loop. These are a few calls per call, never per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.managers import BaseManager, BaseProxy
from typing import Any

from bridge.shared.store import CALL_LEASE_S
from bridge.shared.table import StateTable

HOST_ENV = "VOICEBRIDGE_STATE_HOST"
KEY_ENV = "VOICEBRIDGE_STATE_KEY"


class LockedTable:
    """A `StateTable` for the manager's threads (one per connected worker thread)."""

    def __init__(self) -> None:
        self._table = StateTable()
        self._lock = threading.Lock()

    def claim(self, key: str, ttl_s: float, now: float) -> bool:
        with self._lock:
            return self._table.claim(key, ttl_s, now)

    def put(self, key: str, value: bytes, ttl_s: float, now: float) -> None:
        with self._lock:
            self._table.put(key, value, ttl_s, now)

    def take(self, key: str, now: float) -> bytes | None:
        with self._lock:
            return self._table.take(key, now)

    def join(self, call_sid: str, limit: int | None, lease_s: float, now: float) -> str | None:
        with self._lock:
            return self._table.join(call_sid, limit, lease_s, now)

    def renew(self, call_sids: list[str], lease_s: float, now: float) -> None:
        with self._lock:
            self._table.renew(call_sids, lease_s, now)

    def leave(self, call_sid: str) -> None:
        with self._lock:
            self._table.leave(call_sid)

    def live_calls(self, now: float) -> int:
        with self._lock:
            return self._table.live_calls(now)


_TABLE: LockedTable | None = None


def _the_table() -> LockedTable:
    assert _TABLE is not None
    return _TABLE


class _Manager(BaseManager):
    pass


_Manager.register("table", callable=_the_table)


class StateHost:
    """The supervisor's table, served until `close` (a daemon thread)."""

    def __init__(self, folder: str) -> None:
        global _TABLE
        _TABLE = LockedTable()
        self.address = os.path.join(folder, "state.sock")
        self.key = secrets.token_hex(16)
        manager = _Manager(address=self.address, authkey=self.key.encode())
        self._server = manager.get_server()
        self._thread = threading.Thread(target=self._serve, name="state-host", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(SystemExit):  # how the manager's server ends its loop
            self._server.serve_forever()

    def worker_env(self) -> dict[str, str]:
        """What a worker needs to find the table (its `HostedStore.from_env`)."""
        return {HOST_ENV: self.address, KEY_ENV: self.key}

    def close(self) -> None:
        stop = getattr(self._server, "stop_event", None)
        if stop is not None:
            stop.set()
        self._thread.join(timeout=2.0)
        # Closed now, the listener removes its socket file now: left to its finalizer at the
        # process's exit, it would find the folder already gone and print a traceback.
        self._server.listener.close()


class HostedStore:
    """A worker's view of its supervisor's table."""

    name = "supervisor"

    def __init__(self, address: str, key: str, clock: Callable[[], float] = time.time) -> None:
        self._address, self._key = address, key
        self.where = address
        self._clock = clock
        self._local = threading.local()  # a proxy (a connection) per thread of the pool

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> HostedStore | None:
        address, key = env.get(HOST_ENV), env.get(KEY_ENV)
        return cls(address, key) if address and key else None

    def _table(self) -> Any:
        table: BaseProxy | None = getattr(self._local, "table", None)
        if table is None:
            manager = _Manager(address=self._address, authkey=self._key.encode())
            manager.connect()
            table = manager.table()  # type: ignore[attr-defined]
            self._local.table = table
        return table

    async def _call(self, method: str, *args: Any) -> Any:
        def run() -> Any:
            try:
                return getattr(self._table(), method)(*args)
            except (OSError, EOFError):
                self._local.table = None  # a broken connection: a new one next time
                raise

        return await asyncio.to_thread(run)

    async def ping(self) -> None:
        await self.live_calls()

    async def claim(self, key: str, ttl_s: float) -> bool:
        return bool(await self._call("claim", key, ttl_s, self._clock()))

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call("put", key, value, ttl_s, self._clock())

    async def take(self, key: str) -> bytes | None:
        value = await self._call("take", key, self._clock())
        return bytes(value) if value is not None else None

    async def join(self, call_sid: str, limit: int | None) -> str | None:
        answer = await self._call("join", call_sid, limit, CALL_LEASE_S, self._clock())
        return str(answer) if answer is not None else None

    async def renew(self, call_sids: list[str]) -> None:
        if call_sids:
            await self._call("renew", call_sids, CALL_LEASE_S, self._clock())

    async def leave(self, call_sid: str) -> None:
        await self._call("leave", call_sid)

    async def live_calls(self) -> int:
        return int(await self._call("live_calls", self._clock()))

    async def aclose(self) -> None:
        pass


class StateHostHook:
    """The supervisor's hook (`bridge.workers.SupervisorHook`): the table is served from
    before the first worker starts until after the last has ended, in a private folder."""

    def __init__(self) -> None:
        self._host: StateHost | None = None
        self._folder: str | None = None

    def start(self) -> dict[str, str]:
        self._folder = tempfile.mkdtemp(prefix="voicebridge-state-")  # mode 0700
        self._host = StateHost(self._folder)
        return self._host.worker_env()

    def stop(self) -> None:
        if self._host is not None:
            self._host.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
