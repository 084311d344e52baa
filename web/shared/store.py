"""The shared state every replica sees: one interface, two implementations.

Everything a clinic shares (escalation records and their images, claims, console updates, sign-out
revocations, rate-limit counters, which replica holds which session, a session's clinical state
for resume) goes through :class:`SharedStore`, so the server runs the same code whether it is one
process with everything in memory (:class:`web.shared.memory.MemoryStore`, the embedded default:
no Redis to install) or several replicas sharing Redis (:class:`web.shared.redis_store.RedisStore`,
``REDIS_URL``). ``tests/web/test_shared_store.py`` runs one set of contract tests against both.

The primitives are few and small on purpose; each one exists for a product need named in its
docstring, and each is atomic in both implementations (a claim, a counter and a registration
cannot be half done by two replicas at once).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

# A JSON object: what documents and events are. Keys are strings; values are what json.dumps takes.
Document = dict[str, Any]


@dataclass(frozen=True)
class Hit:
    """One counted request: how many the window holds now, and seconds until it starts over."""

    count: int
    window_left_s: float


class StoreError(RuntimeError):
    """The store cannot do what was asked (Redis unreachable, a claim that never settles)."""


class Subscription(ABC):
    """The events published on one channel after :meth:`SharedStore.subscribe` returned.

    Iterate it (``async for event in subscription``) and close it when the reader goes away, or
    use it as ``async with await store.subscribe(channel) as events``. It is read by one task; the
    iteration ends once it is closed (or the store is).
    """

    @abstractmethod
    async def next_event(self) -> Document:
        """The next event, waiting for it; raises StopAsyncIteration once closed."""

    @abstractmethod
    async def close(self) -> None:
        """Stop receiving; a closed subscription costs nothing (Redis: its connection is freed)."""

    def __aiter__(self) -> AsyncIterator[Document]:
        return self

    async def __anext__(self) -> Document:
        return await self.next_event()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class SharedStore(ABC):
    """What replicas share. Times are seconds; a ``ttl_s`` of None means "kept until deleted".

    Keys are plain strings chosen by the caller (``escalation:<id>``, ``session:<id>``); each
    family below (documents, bytes, counters, revocations, sessions) has its own key space, so an
    image and its escalation record may share a key.
    """

    # Documents: escalation records, a session's clinical state (facts, interview position,
    # escalation) so that a reconnecting patient resumes where they were.

    @abstractmethod
    async def get(self, key: str) -> Document | None:
        """The document at ``key``, or None if there is none (never stored, deleted or expired)."""

    @abstractmethod
    async def put(self, key: str, document: Document, ttl_s: float | None = None) -> None:
        """Store ``document`` at ``key``, replacing what was there; gone after ``ttl_s`` if given."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Forget the document at ``key``; True if there was one."""

    @abstractmethod
    async def keys(self, prefix: str) -> list[str]:
        """Every document key that starts with ``prefix``, sorted (the queue lists its records)."""

    @abstractmethod
    async def compare_and_set(self, key: str, field: str, expected: Any, changes: Document) -> bool:
        """Apply ``changes`` to the document only if its ``field`` still equals ``expected``.

        The escalation claim: ``compare_and_set(key, "status", "waiting", {"status": "claimed",
        "claimed_by": who})``. Exactly one of two clinicians claiming at once, on any replicas,
        gets True; the other gets False and the record names the first. False too when there is
        no document. The document keeps its expiry.
        """

    # Bytes: a patient's photos, kept apart from the record that refers to them so that listing
    # and claiming records never moves megabytes.

    @abstractmethod
    async def put_bytes(self, key: str, data: bytes, ttl_s: float | None = None) -> None:
        """Store ``data`` at ``key``, replacing what was there; gone after ``ttl_s`` if given."""

    @abstractmethod
    async def get_bytes(self, key: str) -> bytes | None:
        """The bytes at ``key``, or None if there are none."""

    @abstractmethod
    async def delete_bytes(self, key: str) -> bool:
        """Forget the bytes at ``key``; True if there were some."""

    # Fan-out: the console's live updates reach clinicians whichever replica serves their page.

    @abstractmethod
    async def publish(self, channel: str, event: Document) -> None:
        """Send ``event`` to every subscription of ``channel``, on every replica; none is kept."""

    @abstractmethod
    async def subscribe(self, channel: str) -> Subscription:
        """A subscription that receives every event published on ``channel`` from now on."""

    # Counters: rate limits (offers, sign-ins, clinician requests) that hold across replicas.

    @abstractmethod
    async def hit(self, key: str, window_s: float) -> Hit:
        """Count one more at ``key``: the count in the current window and how long it stays open.

        The window opens at the first hit and closes ``window_s`` later, when the count starts
        again from 1 (a fixed window; increment and expiry are one atomic step).
        """

    # Revocations: a clinician's signed-out token stays refused on every replica until it would
    # have expired anyway.

    @abstractmethod
    async def revoke(self, family: str, member: str, until: float) -> None:
        """Put ``member`` (a token id) in the revoked set ``family`` until ``until`` (Unix time)."""

    @abstractmethod
    async def is_revoked(self, family: str, member: str) -> bool:
        """True while ``member`` is revoked in ``family``; False after its time has passed."""

    # The session registry: which replica holds which live session, so that everything about a
    # session reaches that replica, and a dead replica's sessions are noticed.

    @abstractmethod
    async def register_session(self, session_id: str, replica_id: str, ttl_s: float) -> None:
        """``replica_id`` holds ``session_id`` now (taking it from any other replica).

        It counts as a heartbeat of the replica: it is alive for ``ttl_s``.
        """

    @abstractmethod
    async def heartbeat(self, replica_id: str, ttl_s: float) -> None:
        """``replica_id`` is alive for ``ttl_s`` more; one call keeps all its sessions owned."""

    @abstractmethod
    async def owner_of(self, session_id: str) -> str | None:
        """The replica holding ``session_id``, or None if none does or its heartbeat has lapsed."""

    @abstractmethod
    async def sessions_of(self, replica_id: str) -> list[str]:
        """The sessions registered to ``replica_id``, sorted, whether or not it is alive.

        A live replica finds a dead one's sessions here (its open escalations show that the live
        session was lost; a reconnecting patient's session is registered again elsewhere).
        """

    @abstractmethod
    async def unregister_session(self, session_id: str) -> None:
        """``session_id`` has ended: no replica holds it."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and end every subscription; the store is not used afterwards."""
