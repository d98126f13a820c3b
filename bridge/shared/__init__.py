"""State the processes of one deployment share (docs/deploy.md, "Workers, replicas and
Redis"): this process's memory, the worker supervisor's table, or Redis (`REDIS_URL`)."""

from __future__ import annotations

from bridge.settings import Settings
from bridge.shared.host import HostedStore
from bridge.shared.store import CALL_LEASE_S, LocalStore, Resilient, SharedStore

__all__ = ["CALL_LEASE_S", "LocalStore", "Resilient", "SharedStore", "shared_store"]


def shared_store(settings: Settings) -> SharedStore:
    """Redis when `REDIS_URL` is set; in a worker of `serve --workers N`, its supervisor's
    table; else this process's own memory."""
    if settings.REDIS_URL is not None:
        from bridge.shared.redis_store import RedisStore

        return Resilient(RedisStore(settings.REDIS_URL.get_secret_value()))
    hosted = HostedStore.from_env()
    if hosted is not None:
        return Resilient(hosted)
    return LocalStore()
