from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.shared.redis_server import RedisServer, redis_server


@pytest.fixture(scope="session")
def _redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis(_redis: RedisServer) -> Iterator[RedisServer]:
    """A real Redis, empty for each test (started again if a test stopped it)."""
    if _redis._proc is None:
        _redis.start()
    _redis.flush()
    yield _redis
    if _redis._proc is None:
        _redis.start()
