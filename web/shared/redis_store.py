"""The shared state of several replicas, in Redis (``REDIS_URL``), with redis-py's asyncio client.

Redis is what a platform team already runs for exactly this (the runbook's "Redis session store
for multi-instance"), and redis-py is its maintained client: connection pooling, reconnects,
pub/sub, transactions and Lua scripts are theirs, not ours to hand-write over a socket.

How each primitive stays atomic across replicas:

- a claim (compare-and-set) is WATCH / MULTI / EXEC on the document's key: if another replica
  writes the key between our read and our write, EXEC fails and we read again, so exactly one of
  two racing claims sees ``waiting`` and wins;
- a rate counter is one Lua script (INCR, and PEXPIRE on the first hit), so no crash between the
  two can leave a counter that never expires;
- revocations are keys that expire at the token's own expiry (SET ... PXAT);
- a session's owner is a key without expiry and each replica's liveness a key with one, so one
  heartbeat keeps all of a replica's sessions owned and a dead replica loses them all at once;
  the owner key and the replicas' session sets change together in one Lua script. (The scripts
  name keys they compute, which a single Redis allows and Redis Cluster does not.)

Every key is under ``namespace`` (``paa:`` by default), so one Redis can serve other things too.
Pub/sub delivers to whoever is subscribed at the time and keeps nothing: a console that reconnects
reads the queue again, it does not expect missed events to be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError, WatchError

from web.shared.store import Document, Hit, SharedStore, StoreError, Subscription

_CLAIM_ATTEMPTS = 50  # a claim retried this often without settling is an error, not a loop
_SUBSCRIBE_CONFIRM_S = 5.0  # how long Redis has to confirm a subscription
_GLOB_SPECIALS = "\\*?[]"

# INCR then, on the first hit of a window, PEXPIRE: one atomic step, so a counter always expires.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
"""

# The owner key and the replicas' session sets change together (the set of the replica a session
# moves from loses it). ARGV[1] is the prefix of the sets' keys; a replica's set is that + its id.
_REGISTER = """
local old = redis.call('GET', KEYS[1])
if old and old ~= ARGV[3] then redis.call('SREM', ARGV[1] .. old, ARGV[2]) end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('SADD', ARGV[1] .. ARGV[3], ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
"""
_UNREGISTER = """
local old = redis.call('GET', KEYS[1])
if old then redis.call('SREM', ARGV[1] .. old, ARGV[2]) end
redis.call('DEL', KEYS[1])
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in _GLOB_SPECIALS else c for c in text)


def _encode(document: Document) -> bytes:
    if not isinstance(document, dict):
        raise TypeError("a document is a JSON object")
    return json.dumps(document, separators=(",", ":")).encode()


class _RedisSubscription(Subscription):
    def __init__(self, store: RedisStore, pubsub: Any) -> None:
        self._store = store
        self._pubsub = pubsub
        self._closed = False

    async def next_event(self) -> Document:
        while not self._closed:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except (RedisError, OSError, RuntimeError):
                if self._closed:  # closed under our feet (store.close() from another task)
                    break
                raise
            if message is not None and message.get("type") == "message":
                return json.loads(message["data"])
        raise StopAsyncIteration

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._store.forget(self)
        try:
            await self._pubsub.aclose()
        except (RedisError, OSError):
            pass  # the connection is going away either way


@contextlib.contextmanager
def _as_store_error(operation: str) -> Iterator[None]:
    """Redis failing (down, refusing, reset) as the store's own error, which callers handle."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreError(f"{operation}: Redis failed ({type(exc).__name__})") from None


class RedisStore(SharedStore):
    """Shared state in one Redis; every replica that opens the same URL sees the same state."""

    def __init__(self, client: redis.Redis, namespace: str = "paa:") -> None:
        self._client = client
        self._ns = namespace
        self._hit = client.register_script(_HIT)
        self._register = client.register_script(_REGISTER)
        self._unregister = client.register_script(_UNREGISTER)
        self._subscriptions: set[_RedisSubscription] = set()

    @classmethod
    async def connect(cls, url: str, namespace: str = "paa:") -> RedisStore:
        """Open the store at ``url`` and check that Redis answers, so a wrong URL fails at start-up."""
        client = redis.from_url(url, decode_responses=False)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            # The URL may carry a password: name the failure, never the URL.
            raise StoreError(f"REDIS_URL: Redis does not answer ({type(exc).__name__})") from None
        return cls(client, namespace)

    def _key(self, family: str, key: str) -> str:
        return f"{self._ns}{family}:{key}"

    # Documents.

    async def get(self, key: str) -> Document | None:
        raw = await self._client.get(self._key("doc", key))
        return None if raw is None else json.loads(raw)

    async def put(self, key: str, document: Document, ttl_s: float | None = None) -> None:
        px = None if ttl_s is None else _ms(ttl_s)
        await self._client.set(self._key("doc", key), _encode(document), px=px)

    async def delete(self, key: str) -> bool:
        return bool(await self._client.delete(self._key("doc", key)))

    async def keys(self, prefix: str) -> list[str]:
        start = self._key("doc", "")
        match = _glob_escape(start + prefix) + "*"
        found = {raw.decode()[len(start) :] async for raw in self._client.scan_iter(match=match, count=500)}
        return sorted(found)

    async def compare_and_set(self, key: str, field: str, expected: Any, changes: Document) -> bool:
        name = self._key("doc", key)
        async with self._client.pipeline(transaction=True) as pipe:
            for _ in range(_CLAIM_ATTEMPTS):
                try:
                    await pipe.watch(name)
                    raw = await pipe.get(name)
                    if raw is None:
                        return False
                    document = json.loads(raw)
                    if document.get(field) != expected:
                        return False
                    pipe.multi()
                    pipe.set(name, _encode({**document, **changes}), keepttl=True)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue  # someone wrote the document meanwhile: read it again
        raise StoreError(f"compare_and_set on {field!r} did not settle in {_CLAIM_ATTEMPTS} attempts")

    # Bytes.

    async def put_bytes(self, key: str, data: bytes, ttl_s: float | None = None) -> None:
        px = None if ttl_s is None else _ms(ttl_s)
        await self._client.set(self._key("bin", key), bytes(data), px=px)

    async def get_bytes(self, key: str) -> bytes | None:
        return await self._client.get(self._key("bin", key))

    async def delete_bytes(self, key: str) -> bool:
        return bool(await self._client.delete(self._key("bin", key)))

    # Fan-out.

    async def publish(self, channel: str, event: Document) -> None:
        await self._client.publish(self._key("chan", channel), _encode(event))

    async def subscribe(self, channel: str) -> Subscription:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self._key("chan", channel))
            # Wait for Redis to confirm: only then is an event published elsewhere sure to arrive.
            deadline = time.monotonic() + _SUBSCRIBE_CONFIRM_S
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError("Redis did not confirm the subscription")
                message = await pubsub.get_message(timeout=left)
                if message is not None and message.get("type") == "subscribe":
                    break
        except BaseException:
            await pubsub.aclose()
            raise
        subscription = _RedisSubscription(self, pubsub)
        self._subscriptions.add(subscription)
        return subscription

    def forget(self, subscription: _RedisSubscription) -> None:
        """Called by a closing subscription: the store no longer closes it."""
        self._subscriptions.discard(subscription)

    # Counters.

    async def hit(self, key: str, window_s: float) -> Hit:
        with _as_store_error("hit"):
            count, left_ms = await self._hit(keys=[self._key("hit", key)], args=[_ms(window_s)])
        return Hit(int(count), max(0, int(left_ms)) / 1000)

    # Revocations.

    async def revoke(self, family: str, member: str, until: float) -> None:
        if until > time.time():
            with _as_store_error("revoke"):
                await self._client.set(self._key("rev", f"{family}:{member}"), b"1", pxat=round(until * 1000))

    async def is_revoked(self, family: str, member: str) -> bool:
        with _as_store_error("is_revoked"):
            return bool(await self._client.exists(self._key("rev", f"{family}:{member}")))

    # The session registry: owner:<session> -> replica (no expiry), alive:<replica> (expires),
    # replica:<replica> -> the set of its sessions, kept equal to the owner keys by two scripts.

    async def register_session(self, session_id: str, replica_id: str, ttl_s: float) -> None:
        await self._register(
            keys=[self._key("owner", session_id), self._key("alive", replica_id)],
            args=[self._key("replica", ""), session_id, replica_id, _ms(ttl_s)],
        )

    async def heartbeat(self, replica_id: str, ttl_s: float) -> None:
        await self._client.set(self._key("alive", replica_id), b"1", px=_ms(ttl_s))

    async def owner_of(self, session_id: str) -> str | None:
        raw = await self._client.get(self._key("owner", session_id))
        if raw is None:
            return None
        replica = raw.decode()
        return replica if await self._client.exists(self._key("alive", replica)) else None

    async def sessions_of(self, replica_id: str) -> list[str]:
        return sorted(m.decode() for m in await self._client.smembers(self._key("replica", replica_id)))

    async def unregister_session(self, session_id: str) -> None:
        await self._unregister(
            keys=[self._key("owner", session_id)], args=[self._key("replica", ""), session_id]
        )

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self._subscriptions)), return_exceptions=True)
        await self._client.aclose()
