"""Shared state: what every replica of the service must see (docs/architecture.md, "Shared state").

``open_store(settings)`` picks the implementation: Redis when ``REDIS_URL`` is set, so several
replicas share one state; otherwise this process's memory, so the quick start needs no Redis.
"""

from __future__ import annotations

from configs.settings import Settings
from web.shared.memory import MemoryStore
from web.shared.redis_store import RedisStore
from web.shared.store import Document, Hit, SharedStore, StoreError, Subscription

__all__ = [
    "Document",
    "Hit",
    "MemoryStore",
    "RedisStore",
    "SharedStore",
    "StoreError",
    "Subscription",
    "open_store",
]


async def open_store(settings: Settings) -> SharedStore:
    """The store the settings ask for; raises StoreError if Redis is asked for and does not answer."""
    if settings.redis_url:
        return await RedisStore.connect(settings.redis_url)
    return MemoryStore()
