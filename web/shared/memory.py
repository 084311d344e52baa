"""The shared state of one process: the embedded default, no Redis to install.

Right for one replica (the quick start, the tests, a single box): what it holds is lost on restart
and seen by no other process. Every operation runs without awaiting anything, so on the event loop
each one is atomic, as the Redis store's are across replicas. Documents and events go through JSON
on the way in and out, as they do in Redis: a caller that mutates what it got back changes nothing
stored, and a value JSON cannot carry fails here as it would there.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from web.shared.store import Document, Hit, SharedStore, Subscription

_SWEEP_EVERY_WRITES = 512  # expired entries are dropped on read, and all of them this often


def _deadline(ttl_s: float | None) -> float | None:
    return None if ttl_s is None else time.monotonic() + ttl_s


def _live(deadline: float | None) -> bool:
    return deadline is None or time.monotonic() < deadline


def _copy(document: Document) -> Document:
    copied = json.loads(json.dumps(document))
    if not isinstance(copied, dict):
        raise TypeError("a document is a JSON object")
    return copied


class _Expiring:
    """A key space whose entries may expire (monotonic deadlines, None for never)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[Any, float | None]] = {}
        self._writes = 0

    def get(self, key: str) -> Any | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if not _live(entry[1]):
            del self.entries[key]
            return None
        return entry[0]

    def deadline(self, key: str) -> float | None:
        return self.entries[key][1]

    def set(self, key: str, value: Any, deadline: float | None) -> None:
        self.entries[key] = (value, deadline)
        self._writes += 1
        if self._writes % _SWEEP_EVERY_WRITES == 0:
            self.sweep()

    def pop(self, key: str) -> bool:
        live = self.get(key) is not None
        self.entries.pop(key, None)
        return live

    def sweep(self) -> None:
        for key in [k for k, (_, deadline) in self.entries.items() if not _live(deadline)]:
            del self.entries[key]


class _MemorySubscription(Subscription):
    def __init__(self, store: MemoryStore, channel: str) -> None:
        self._store = store
        self._channel = channel
        self._queue: asyncio.Queue[Document | None] = asyncio.Queue()
        self._closed = False

    def deliver(self, event: Document | None) -> None:
        self._queue.put_nowait(event)

    async def next_event(self) -> Document:
        if self._closed:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:  # closed while waiting
            raise StopAsyncIteration
        return event

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._store.unsubscribe(self._channel, self)
            self.deliver(None)


class MemoryStore(SharedStore):
    """Everything in this process's memory; see the module's docstring for when that is right."""

    def __init__(self) -> None:
        self._documents = _Expiring()
        self._bytes = _Expiring()
        self._counters = _Expiring()
        self._revoked = _Expiring()
        self._owners: dict[str, str] = {}  # session -> replica
        self._alive_until: dict[str, float] = {}  # replica -> monotonic deadline
        self._subscriptions: dict[str, set[_MemorySubscription]] = {}

    async def get(self, key: str) -> Document | None:
        document = self._documents.get(key)
        return None if document is None else _copy(document)

    async def put(self, key: str, document: Document, ttl_s: float | None = None) -> None:
        self._documents.set(key, _copy(document), _deadline(ttl_s))

    async def delete(self, key: str) -> bool:
        return self._documents.pop(key)

    async def keys(self, prefix: str) -> list[str]:
        self._documents.sweep()
        return sorted(k for k in self._documents.entries if k.startswith(prefix))

    async def compare_and_set(self, key: str, field: str, expected: Any, changes: Document) -> bool:
        document = self._documents.get(key)
        if document is None or document.get(field) != expected:
            return False
        self._documents.set(key, _copy({**document, **changes}), self._documents.deadline(key))
        return True

    async def put_bytes(self, key: str, data: bytes, ttl_s: float | None = None) -> None:
        self._bytes.set(key, bytes(data), _deadline(ttl_s))

    async def get_bytes(self, key: str) -> bytes | None:
        return self._bytes.get(key)

    async def delete_bytes(self, key: str) -> bool:
        return self._bytes.pop(key)

    async def publish(self, channel: str, event: Document) -> None:
        copied = _copy(event)
        for subscription in list(self._subscriptions.get(channel, ())):
            subscription.deliver(_copy(copied))

    async def subscribe(self, channel: str) -> Subscription:
        subscription = _MemorySubscription(self, channel)
        self._subscriptions.setdefault(channel, set()).add(subscription)
        return subscription

    def unsubscribe(self, channel: str, subscription: _MemorySubscription) -> None:
        """Called by a closing subscription: it receives nothing more."""
        subscribers = self._subscriptions.get(channel, set())
        subscribers.discard(subscription)
        if not subscribers:
            self._subscriptions.pop(channel, None)

    async def hit(self, key: str, window_s: float) -> Hit:
        count = self._counters.get(key)
        if count is None:
            count, deadline = 0, _deadline(window_s)
        else:
            deadline = self._counters.deadline(key)
        self._counters.set(key, count + 1, deadline)
        assert deadline is not None  # counters always expire
        return Hit(count + 1, max(0.0, deadline - time.monotonic()))

    async def revoke(self, family: str, member: str, until: float) -> None:
        remaining = until - time.time()
        if remaining > 0:
            self._revoked.set(f"{family}\0{member}", True, _deadline(remaining))

    async def is_revoked(self, family: str, member: str) -> bool:
        return self._revoked.get(f"{family}\0{member}") is not None

    async def register_session(self, session_id: str, replica_id: str, ttl_s: float) -> None:
        self._owners[session_id] = replica_id
        await self.heartbeat(replica_id, ttl_s)

    async def heartbeat(self, replica_id: str, ttl_s: float) -> None:
        self._alive_until[replica_id] = time.monotonic() + ttl_s

    async def owner_of(self, session_id: str) -> str | None:
        replica = self._owners.get(session_id)
        if replica is None or not _live(self._alive_until.get(replica, 0.0)):
            return None
        return replica

    async def sessions_of(self, replica_id: str) -> list[str]:
        return sorted(s for s, r in self._owners.items() if r == replica_id)

    async def unregister_session(self, session_id: str) -> None:
        self._owners.pop(session_id, None)

    async def close(self) -> None:
        for subscribers in list(self._subscriptions.values()):
            for subscription in list(subscribers):
                await subscription.close()
