"""The workers' shared table without Redis: the supervisor's `StateHost`, reached by each
worker's `HostedStore` from a thread (here two stores stand for two workers)."""

from __future__ import annotations

from multiprocessing import AuthenticationError
from pathlib import Path

import pytest

from bridge.shared.host import HOST_ENV, KEY_ENV, HostedStore, StateHost
from bridge.shared.store import Resilient
from bridge.shared.table import DUPLICATE


async def test_two_workers_see_one_table(tmp_path: Path) -> None:
    host = StateHost(str(tmp_path))
    try:
        env = host.worker_env()
        assert set(env) == {HOST_ENV, KEY_ENV}
        one, two = HostedStore.from_env(env), HostedStore.from_env(env)
        assert one is not None and two is not None
        assert await one.claim("token:n", 60.0) is True
        assert await two.claim("token:n", 60.0) is False
        await one.put("fact:outcome:CA1", b'{"then":"hangup"}', 600.0)
        assert await two.take("fact:outcome:CA1") == b'{"then":"hangup"}'
        assert await one.take("fact:outcome:CA1") is None
        assert await one.join("CA1", 2) is None
        assert await two.join("CA1", 2) == DUPLICATE
        await two.renew(["CA1"])
        assert await two.live_calls() == 1
        await one.leave("CA1")
        assert await two.live_calls() == 0
    finally:
        host.close()


async def test_a_wrong_key_is_refused_and_the_worker_carries_on_in_memory(
    tmp_path: Path,
) -> None:
    host = StateHost(str(tmp_path))
    try:
        intruder = HostedStore(host.address, "0" * 32)
        with pytest.raises(AuthenticationError):
            await intruder.claim("token:n", 60.0)
        store = Resilient(intruder)
        assert await store.claim("token:n", 60.0) is True  # this process's memory
        assert not store.available
    finally:
        host.close()
