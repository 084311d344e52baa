"""The clinician queue: escalations waiting for a clinician, and who is taking each one over.

In memory, and the one keeper of the records of the server's sessions: a record is stored when
it arrives (from the session's ``EscalationObserver``; sessions built with a queue have no
store of their own) and on every change after that, through ``EscalationStore``. The
waiting (and claimed) ones are loaded again at start, a claim lost with the last process going
back to waiting. An escalation moves waiting -> claimed -> joined <-> handed_back -> ended; only
the clinician who claimed it moves it on, a claim not followed by a join within
``claim_timeout_s`` goes back to waiting, and every move is written into ``record.events`` (who
and when).

Storage never holds up the event loop: every write goes, as a snapshot, to one writer thread
(writes stay in order), so a hung or slow disk delays the files, not the sessions. A write that
fails or hangs shows in ``storage_status()`` (``/health`` says ``degraded``); a record file that
cannot be read at start is skipped and counted, and the others load. An ended escalation stays
in the list for ``ended_grace_s`` (the console shows it as ended), then leaves memory and every
open console (a ``removed`` change); its file stays until ``python -m web.purge`` deletes it past
the retention.

Shared across replicas (``share``, issue 13): the authoritative live state is then a document per
escalation in a :class:`~web.shared.SharedStore` (its photo under a bytes key of its own), and this
queue is that replica's cache of it, so every read (``get``, ``list``, ``for_session``) stays
synchronous. Every change is a compare-and-set on the document's revision: of two replicas moving
the same escalation at once exactly one wins, the other reads the document again and decides on
what is there now (a second clinician's claim fails with the first one's name, a claim expiring on
one replica cannot undo a join made on another). The winner writes the record's file, as above,
and publishes the change; every replica applies what is published (newer revisions only) and tells
its consoles. Each replica runs a claim timer for every claim it knows, the expiry being a
compare-and-set too, so a claim of a replica that died still lapses. If the store fails, a
clinician's change is refused (a ``QueueError`` the console shows), while a new escalation is never
dropped: it stays here and in its file, ``storage_status()`` says ``failing``, and it is put into
the store again as soon as the store answers. Without ``share`` (a replay, a tool) the queue is
this process's alone, exactly as before.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import TypeVar

from agent.escalation import EscalationOutcome, EscalationRecord, EscalationStatus, EscalationStore
from agent.policy import Urgency
from web.shared import Document, SharedStore
from web.shared import Subscription as StoreSubscription

WAITING = EscalationStatus.WAITING
CLAIMED = EscalationStatus.CLAIMED
JOINED = EscalationStatus.JOINED
HANDED_BACK = EscalationStatus.HANDED_BACK
ENDED = EscalationStatus.ENDED
ACTIVE = (WAITING, CLAIMED, JOINED, HANDED_BACK)
OUTCOMES = tuple(EscalationOutcome)
SYSTEM = "system"
# The console shows an ended escalation this long (seconds), then it drops out of the list and
# of memory; its record stays on disk until the retention purge (``python -m web.purge``).
ENDED_GRACE_S = 10 * 60.0
# A write still not done after this long (seconds) counts as failing storage: a hung disk.
STALLED_AFTER_S = 30.0
# How long ``close`` waits for the writes still queued (a hung disk must not hang the shutdown).
CLOSE_FLUSH_S = 10.0
# The shared store: a call not answered within this long (seconds) counts as the store failing;
# ``add`` (a session waits for it) gives the store this long in all, then keeps the escalation here.
SHARED_TIMEOUT_S = 2.0
# How often (seconds) escalations the store did not take are offered to it again, and the longest
# wait between two attempts to listen to the other replicas again.
SHARED_RETRY_S = 1.0
# A change that keeps losing its compare-and-set this often (others changing the same escalation
# all the time) is refused rather than retried forever.
CHANGE_ATTEMPTS = 20
KEY_PREFIX = "escalation:"  # documents, and the photos in the bytes key space, under the same key
CHANNEL = "escalations"
log = logging.getLogger(__name__)
T = TypeVar("T")


class QueueError(Exception):
    """A change the queue refuses; the message says why in words a clinician understands."""


class UnknownEscalation(QueueError):
    pass


class AlreadyClaimed(QueueError):
    def __init__(self, claimed_by: str) -> None:
        super().__init__("another clinician has already claimed this escalation")
        self.claimed_by = claimed_by


class NotAllowed(QueueError):
    """Not this clinician's escalation, or not in a state that allows the change."""


class SharedUnavailable(QueueError):
    """The shared store (Redis) did not answer: the change was not made on any replica."""

    def __init__(self) -> None:
        super().__init__("the clinician queue cannot be reached right now; nothing was changed, try again")


class ChangeKind(StrEnum):
    """What happened to an escalation (also the ``event`` written into its record, from ``claimed`` on)."""

    ADDED = "added"
    UPDATED = "updated"
    CLAIMED = "claimed"
    RELEASED = "released"
    CLAIM_EXPIRED = "claim_expired"
    JOINED = "joined"
    HANDED_BACK = "handed_back"
    ENDED = "ended"
    REOPENED = "reopened"
    REMOVED = "removed"  # an ended escalation past its grace period: consoles drop it (not written)


@dataclass(frozen=True)
class QueueChange:
    kind: ChangeKind
    record: EscalationRecord  # a snapshot taken at the change


def waiting_seconds(record: EscalationRecord, now: datetime | None = None) -> float:
    """Seconds since the escalation was raised."""
    created = datetime.fromisoformat(record.created_at)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return max(0.0, ((now or datetime.now(UTC)) - created).total_seconds())


def urgency_rank(level: Urgency | str) -> int:
    """0 is the most urgent; an unknown level sorts last."""
    try:
        return Urgency(level).rank
    except ValueError:
        return len(Urgency)


def _snapshot(record: EscalationRecord) -> EscalationRecord:
    return EscalationRecord.from_dict(record.to_dict())


def _key(record_id: str) -> str:
    return f"{KEY_PREFIX}{record_id}"


def _photo(record: EscalationRecord) -> tuple[str | None, bytes]:
    """How the photo is stored: the JPEG itself when the text is plain base64 (it is, from the
    pipeline), else the text as it is; (None, b"") for no photo."""
    text = record.best_frame_jpeg_b64
    if text is None:
        return None, b""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return "text", text.encode()
    return ("jpeg", data) if base64.b64encode(data).decode() == text else ("text", text.encode())


def _photo_text(form: str, data: bytes) -> str:
    return base64.b64encode(data).decode() if form == "jpeg" else data.decode()


def _document(record: EscalationRecord, rev: int) -> Document:
    """The record as the store keeps it: without its photo (a bytes key), with its revision."""
    document = record.to_dict()
    document.pop("best_frame_jpeg_b64", None)
    document["photo"] = _photo(record)[0]
    document["rev"] = rev
    return document


def _from_document(document: Document, photo: str | None) -> EscalationRecord:
    record = EscalationRecord.from_dict(document)  # ``photo`` and ``rev`` are not record fields
    record.best_frame_jpeg_b64 = photo
    return record


class Subscription:
    """Queue changes as an async iterator; ends when closed or when it falls too far behind."""

    def __init__(self, owner: EscalationQueue, maxsize: int) -> None:
        self._owner = owner
        self._items: asyncio.Queue[QueueChange | None] = asyncio.Queue(maxsize + 1)
        self._maxsize = maxsize
        self.closed = False

    def push(self, change: QueueChange) -> None:
        if self.closed:
            return
        if self._items.qsize() >= self._maxsize:
            self.close()  # a stalled reader reconnects and starts from a fresh list
            return
        self._items.put_nowait(change)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._owner._subscribers.discard(self)
            self._items.put_nowait(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> QueueChange:
        item = await self._items.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EscalationQueue:
    """Every escalation of this process (once shared: of every replica), and those waiting from before."""

    def __init__(
        self,
        store: EscalationStore,
        *,
        claim_timeout_s: float = 120.0,
        ended_grace_s: float = ENDED_GRACE_S,
        stalled_after_s: float = STALLED_AFTER_S,
        shared_timeout_s: float = SHARED_TIMEOUT_S,
        shared_retry_s: float = SHARED_RETRY_S,
    ) -> None:
        self.store = store
        self.claim_timeout_s = claim_timeout_s
        self.ended_grace_s = ended_grace_s
        self.stalled_after_s = stalled_after_s
        self.shared_timeout_s = shared_timeout_s
        self.shared_retry_s = shared_retry_s
        self._records: dict[str, EscalationRecord] = {}
        self._revs: dict[str, int] = {}  # the revision of each cached record (0: never in the store)
        self._lock = asyncio.Lock()
        self._claim_timers: dict[str, asyncio.Task[None]] = {}
        self._evict_timers: dict[str, asyncio.Task[None]] = {}
        self._subscribers: set[Subscription] = set()
        self._writer: ThreadPoolExecutor | None = None
        self._writes: dict[asyncio.Future[object], tuple[str, float]] = {}  # pending: id, started
        self._failed: set[str] = set()  # records whose latest write failed
        self.storage_problem: dict[str, str] | None = None  # the last failure: kind and time only
        self.unreadable_at_start = 0
        self._shared: SharedStore | None = None
        self._shared_down = False  # the last call to the shared store failed
        self._unshared: set[str] = set()  # records whose latest version the store did not take
        self._listener: asyncio.Task[None] | None = None
        self._resync: asyncio.Task[None] | None = None
        self._load()

    def _load(self) -> None:
        records = self.store.all()
        self.unreadable_at_start = len(self.store.unreadable)
        if self.unreadable_at_start:
            log.warning("clinician queue: %d unreadable escalation files skipped", self.unreadable_at_start)
        for record in records:
            if record.status == CLAIMED:  # its claim timer died with the last process
                self._move(record, WAITING, ChangeKind.CLAIM_EXPIRED, SYSTEM)
                record.clinician = None
                self._save(record)
            if record.status == WAITING:
                self._records[record.id] = record
        if self._records:
            log.info("clinician queue: %d escalations waiting from before", len(self._records))

    async def share(self, shared: SharedStore) -> None:
        """Make this queue one replica's view of the queue in ``shared`` (once, before serving).

        Listens to the other replicas first (so that no change falls in between), then takes the
        live escalations from the store (they win over this replica's files) and puts into the
        store the ones from the files that it does not have. Raises what the store raises.
        """
        if self._shared is not None:
            raise RuntimeError("the queue is shared already")
        self._shared = shared
        events = await shared.subscribe(CHANNEL)
        try:
            async with self._lock:
                await self._reload()
        except BaseException:
            await events.close()
            self._shared = None
            raise
        self._listener = asyncio.create_task(self._listen(events), name="escalation-queue-listener")

    # --- reading --------------------------------------------------------------------------

    def get(self, record_id: str) -> EscalationRecord | None:
        return self._records.get(record_id)

    def list(self) -> list[EscalationRecord]:
        """Waiting and in-progress first, then ended; most urgent first, then oldest."""
        return sorted(
            self._records.values(),
            key=lambda r: (r.status not in ACTIVE, urgency_rank(r.level), r.created_at),
        )

    def for_session(self, session_id: str) -> EscalationRecord | None:
        """The escalation of a patient session: an active one if any, else the latest."""
        mine = [r for r in self._records.values() if r.session_id == session_id]
        if not mine:
            return None
        return max(mine, key=lambda r: (r.status in ACTIVE, r.created_at))

    def storage_status(self) -> dict[str, object]:
        """``storage``: ``failing`` while a record's latest write failed or a write hangs, or (shared)
        while the store does not answer or holds an older version of an escalation than this
        replica, else ``ok``; the last failure (its kind and time, nothing of the record), the
        writes still pending and the files skipped as unreadable at start. Shared, also
        ``shared`` (``ok``/``failing``) and ``unshared`` (escalations the store has yet to take)."""
        now = time.monotonic()
        stalled = any(now - started > self.stalled_after_s for _, started in self._writes.values())
        shared_failing = self._shared_down or bool(self._unshared)
        status: dict[str, object] = {
            "storage": "failing" if self._failed or stalled or shared_failing else "ok",
            "last_error": dict(self.storage_problem) if self.storage_problem else None,
            "pending_writes": len(self._writes),
            "stalled": stalled,
            "unreadable_at_start": self.unreadable_at_start,
        }
        if self._shared is not None:
            status["shared"] = "failing" if shared_failing else "ok"
            status["unshared"] = len(self._unshared)
        return status

    def subscribe(self, maxsize: int = 256) -> Subscription:
        """Every change from now on (``async for change in queue.subscribe()``); close it when done."""
        subscription = Subscription(self, maxsize)
        self._subscribers.add(subscription)
        return subscription

    # --- changes --------------------------------------------------------------------------

    async def add(self, record: EscalationRecord) -> None:
        """Queue and store a new escalation; a known id (the same escalation, raised) has its content
        refreshed and stored again (status and claim are kept).

        Never refused: if the shared store fails or is slow (``shared_timeout_s`` in all, the
        session waits for this), the escalation stays in this replica and its file, reaches this
        replica's consoles, ``storage_status`` says ``failing``, and it goes into the store as
        soon as the store answers again."""
        if self._shared is not None:
            try:
                async with asyncio.timeout(self.shared_timeout_s), self._lock:
                    await self._add_shared(record, self._records.get(record.id))
                return
            except Exception as exc:  # noqa: BLE001 - whatever failed, the escalation is kept here
                if not isinstance(exc, SharedUnavailable):
                    self._shared_down = True
                    kind = type(exc).__name__
                    self.storage_problem = {
                        "kind": kind,
                        "at": datetime.now(UTC).isoformat(timespec="seconds"),
                    }
                log.error("escalation %s kept on this replica only: the shared store failed", record.id)
                self._unshared.add(record.id)
                self._start_resync()
        # No await from here on: atomic on the event loop, with or without the lock.
        known = self._records.get(record.id)
        rev = self._revs.get(record.id, 0)
        if known is None:
            self._install(record, rev, ChangeKind.ADDED, origin=True)
        else:
            self._install(_refreshed(known, record), rev, ChangeKind.UPDATED, origin=True)

    async def claim(self, record_id: str, clinician: str) -> EscalationRecord:
        """Take an escalation: exactly one clinician wins, on any replica; the others: ``AlreadyClaimed``."""

        def decide(record: EscalationRecord) -> bool:
            if record.clinician == clinician and record.status in (CLAIMED, JOINED, HANDED_BACK):
                return False
            if record.status != WAITING:
                if record.clinician is not None and record.status != ENDED:
                    raise AlreadyClaimed(record.clinician)
                raise NotAllowed(f"this escalation is {record.status.replace('_', ' ')}")
            record.clinician = clinician
            self._move(record, CLAIMED, ChangeKind.CLAIMED, clinician)
            return True

        async with self._lock:
            return await self._change(record_id, ChangeKind.CLAIMED, decide)

    async def release(self, record_id: str, clinician: str) -> EscalationRecord:
        """Give a claim back before joining."""

        def decide(record: EscalationRecord) -> bool:
            _check_mine(record, clinician, (CLAIMED,))
            record.clinician = None
            self._move(record, WAITING, ChangeKind.RELEASED, clinician)
            return True

        async with self._lock:
            return await self._change(record_id, ChangeKind.RELEASED, decide)

    async def mark_joined(self, record_id: str, clinician: str) -> EscalationRecord:
        def decide(record: EscalationRecord) -> bool:
            _check_mine(record, clinician, (CLAIMED, JOINED, HANDED_BACK))
            self._move(record, JOINED, ChangeKind.JOINED, clinician)
            return True

        async with self._lock:
            return await self._change(record_id, ChangeKind.JOINED, decide)

    async def hand_back(self, record_id: str, clinician: str) -> EscalationRecord:
        """The clinician leaves the room; the assistant carries on (the clinician may join again)."""

        def decide(record: EscalationRecord) -> bool:
            _check_mine(record, clinician, (JOINED,))
            self._move(record, HANDED_BACK, ChangeKind.HANDED_BACK, clinician)
            return True

        async with self._lock:
            return await self._change(record_id, ChangeKind.HANDED_BACK, decide)

    async def end(
        self, record_id: str, clinician: str, outcome: EscalationOutcome | str = EscalationOutcome.COMPLETED
    ) -> EscalationRecord:
        if outcome not in OUTCOMES:
            raise NotAllowed(f"the outcome is one of {', '.join(OUTCOMES)}")
        ended_as = EscalationOutcome(outcome)

        def decide(record: EscalationRecord) -> bool:
            _check_mine(record, clinician, (CLAIMED, JOINED, HANDED_BACK))
            self._move(record, ENDED, ChangeKind.ENDED, clinician, outcome=ended_as)
            return True

        async with self._lock:
            return await self._change(record_id, ChangeKind.ENDED, decide)

    async def reopen(self, record_id: str, by: str = "patient") -> EscalationRecord:
        """A handed-back or ended escalation waits for a clinician again (the patient asked again)."""

        def decide(record: EscalationRecord) -> bool:
            if record.status not in (HANDED_BACK, ENDED):
                return False
            record.clinician = None
            self._move(record, WAITING, ChangeKind.REOPENED, by)
            return True

        async with self._lock:
            return await self._change(record_id, ChangeKind.REOPENED, decide)

    async def flush(self, within_s: float | None = None) -> bool:
        """Wait for the writes queued so far; False if some are still pending after ``within_s``."""
        pending = list(self._writes)
        if not pending:
            return True
        _, still = await asyncio.wait(pending, timeout=within_s)
        return not still

    async def close(self) -> None:
        """Stop the timers and the listening, end every subscription and wait (a while) for the
        pending writes. The shared store stays open: it belongs to whoever opened it."""
        tasks = [*self._claim_timers.values(), *self._evict_timers.values(), self._listener, self._resync]
        timers = [task for task in tasks if task is not None]
        for task in timers:
            task.cancel()
        for task in timers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._claim_timers.clear()
        self._evict_timers.clear()
        self._listener = self._resync = None
        for subscription in list(self._subscribers):
            subscription.close()
        if not await self.flush(CLOSE_FLUSH_S):
            log.error("clinician queue: %d escalation writes still pending at close", len(self._writes))
        if self._writer is not None:
            self._writer.shutdown(wait=False)
            self._writer = None

    # --- internals: one change --------------------------------------------------------------

    def _find(self, record_id: str) -> EscalationRecord:
        record = self._records.get(record_id)
        if record is None:
            raise UnknownEscalation("no such escalation")
        return record

    @staticmethod
    def _move(
        record: EscalationRecord, status: EscalationStatus, event: ChangeKind, by: str, **extra: str
    ) -> None:
        record.status = status
        at = datetime.now(UTC).isoformat(timespec="seconds")
        record.events.append({"at": at, "event": event, "by": by, **extra})

    async def _change(
        self, record_id: str, kind: ChangeKind, decide: Callable[[EscalationRecord], bool]
    ) -> EscalationRecord:
        """Apply ``decide`` (which changes a copy of the record, or returns False for nothing to do,
        or raises a ``QueueError``) and make the result the record's state. Shared, only if nobody
        changed the record since the version decided on: else read it again and decide again. Runs
        under the lock."""
        current = self._find(record_id)
        rev = self._revs.get(record_id, 0)
        for _ in range(CHANGE_ATTEMPTS):
            candidate = _snapshot(current)
            if not decide(candidate):
                return self._records.get(record_id, current)
            if self._shared is None:
                return self._install(candidate, rev + 1, kind, origin=True)
            won = await self._shared_call(
                self._shared.compare_and_set(_key(record_id), "rev", rev, _document(candidate, rev + 1))
            )
            if won:
                self._unshared.discard(record_id)
                installed = self._install(candidate, rev + 1, kind, origin=True)
                await self._publish(kind, installed, rev + 1)
                return installed
            fresh = await self._shared_call(self._shared.get(_key(record_id)))
            if fresh is None:  # the store lost it (Redis restarted empty): this replica's version goes back
                await self._put(current, rev)
                continue
            current, rev = _from_document(fresh, current.best_frame_jpeg_b64), int(fresh["rev"])
        raise QueueError("this escalation kept changing meanwhile; try again")

    async def _add_shared(self, record: EscalationRecord, known: EscalationRecord | None) -> None:
        """``add`` through the store: new there (with its photo), or refreshed if the store has it."""
        assert self._shared is not None
        stored = await self._shared_call(self._shared.get(_key(record.id)))
        if stored is None:  # new (or the store lost it: then refreshed here, as without a store)
            candidate = record if known is None else _refreshed(known, record)
            kind = ChangeKind.ADDED if known is None else ChangeKind.UPDATED
            rev = self._revs.get(record.id, 0) + 1
            await self._put(candidate, rev)
            installed = self._install(candidate, rev, kind, origin=True)
            await self._publish(ChangeKind.ADDED, installed, rev)
            return
        if known is None:  # evicted here, still in the store: take it as it is there
            self._install(_from_document(stored, None), int(stored["rev"]), ChangeKind.ADDED, origin=False)
        if record.best_frame_jpeg_b64 is not None:
            await self._put_photo(record)

        def decide(current: EscalationRecord) -> bool:
            fresh = _refreshed(current, record)
            for name in _CONTENT:
                setattr(current, name, getattr(fresh, name))
            current.best_frame_jpeg_b64 = fresh.best_frame_jpeg_b64
            return True

        await self._change(record.id, ChangeKind.UPDATED, decide)

    def _install(
        self, record: EscalationRecord, rev: int, kind: ChangeKind, *, origin: bool
    ) -> EscalationRecord:
        """Make ``record`` this replica's version: the cached object is updated in place (callers
        hold it), the file written if this replica made the change, timers set, consoles told."""
        cached = self._records.get(record.id)
        if cached is None:
            cached = self._records[record.id] = record
        elif cached is not record:
            for name in EscalationRecord.__dataclass_fields__:
                setattr(cached, name, getattr(record, name))
        self._revs[record.id] = rev
        if origin:
            self._save(cached)
        if kind == ChangeKind.CLAIMED:
            self._start_claim_timer(cached)
        elif cached.status == CLAIMED:
            if record.id not in self._claim_timers:  # a claim from before this replica knew of it
                self._start_claim_timer(cached)
        else:
            self._stop_claim_timer(record.id)
        if kind == ChangeKind.ENDED or (cached.status == ENDED and record.id not in self._evict_timers):
            self._start_evict_timer(record.id)
        elif kind == ChangeKind.REOPENED or cached.status != ENDED:
            self._stop_evict_timer(record.id)
        self._notify(QueueChange(kind, _snapshot(cached)))
        return cached

    def reshow(self, session_id: str) -> None:
        """Tell the consoles again about the session's open escalations (nothing in them changed,
        but what the consoles show about them did: the live session was lost, or is back)."""
        for record in list(self._records.values()):
            if record.session_id == session_id and record.status in ACTIVE:
                self._notify(QueueChange(ChangeKind.UPDATED, _snapshot(record)))

    def _notify(self, change: QueueChange) -> None:
        for subscription in list(self._subscribers):
            subscription.push(change)

    # --- internals: the shared store ------------------------------------------------------

    async def _shared_call(self, call: Awaitable[T]) -> T:
        """One call to the store, bounded in time; any failure is ``SharedUnavailable`` (and shows
        in ``storage_status``), so a clinician's change is refused, never half made."""
        try:
            result = await asyncio.wait_for(call, self.shared_timeout_s)
        except Exception as exc:  # noqa: BLE001 - whatever the store raised, it did not do it
            self._shared_down = True
            kind = type(exc).__name__
            self.storage_problem = {"kind": kind, "at": datetime.now(UTC).isoformat(timespec="seconds")}
            log.error("clinician queue: the shared store failed (%s)", kind)
            raise SharedUnavailable() from exc
        self._shared_down = False
        return result

    async def _put_photo(self, record: EscalationRecord) -> None:
        assert self._shared is not None
        form, data = _photo(record)
        if form is not None:
            await self._shared_call(self._shared.put_bytes(_key(record.id), data))

    async def _put(self, record: EscalationRecord, rev: int) -> None:
        """Put this replica's version of ``record`` into the store (which did not have it)."""
        assert self._shared is not None
        await self._put_photo(record)
        await self._shared_call(self._shared.put(_key(record.id), _document(record, rev)))
        self._unshared.discard(record.id)

    async def _publish(self, kind: ChangeKind, record: EscalationRecord, rev: int) -> None:
        """Tell the other replicas; the change is made already, so a failure here is only logged
        (their consoles catch up when they listen again and read the store)."""
        assert self._shared is not None
        with contextlib.suppress(SharedUnavailable):
            await self._shared_call(
                self._shared.publish(CHANNEL, {"kind": kind, "record": _document(record, rev)})
            )

    async def _listen(self, events: StoreSubscription) -> None:
        """Apply the other replicas' changes; when the store drops, listen again and read it all."""
        assert self._shared is not None
        subscription: StoreSubscription | None = events
        pause = self.shared_retry_s / 8
        while True:
            try:
                if subscription is None:
                    subscription = await self._shared_call(self._shared.subscribe(CHANNEL))
                    async with self._lock:
                        await self._reload()
                    pause = self.shared_retry_s / 8
                event = await subscription.next_event()
                await self._apply(event)
            except StopAsyncIteration:
                return  # the store was closed
            except asyncio.CancelledError:
                if subscription is not None:
                    await subscription.close()
                raise
            except Exception as exc:  # noqa: BLE001 - the store went away: listen again, a bit later
                if not isinstance(exc, SharedUnavailable):
                    self._shared_down = True
                    log.error(
                        "clinician queue: listening to the other replicas failed (%s)", type(exc).__name__
                    )
                if subscription is not None:
                    with contextlib.suppress(Exception):
                        await subscription.close()
                subscription = None
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.shared_retry_s)

    async def _apply(self, event: Document) -> None:
        """Another replica's change (or this one's, coming back): newer revisions only."""
        assert self._shared is not None
        document = event.get("record")
        if not isinstance(document, dict) or "id" not in document or "rev" not in document:
            return
        record_id, rev = str(document["id"]), int(document["rev"])
        if rev <= self._revs.get(record_id, 0):
            return
        kind = ChangeKind(event.get("kind", ChangeKind.UPDATED))
        photo = await self._photo_for(document, kind)
        async with self._lock:
            if rev > self._revs.get(record_id, 0):
                self._install(_from_document(document, photo), rev, kind, origin=False)

    async def _photo_for(self, document: Document, kind: ChangeKind) -> str | None:
        """The record's photo: this replica's copy, or the store's when new or refreshed."""
        assert self._shared is not None
        cached = self._records.get(str(document["id"]))
        form = document.get("photo")
        if form is None:
            return None
        if cached is not None and cached.best_frame_jpeg_b64 is not None and kind != ChangeKind.UPDATED:
            return cached.best_frame_jpeg_b64
        data = await self._shared_call(self._shared.get_bytes(_key(str(document["id"]))))
        if data is None:
            return cached.best_frame_jpeg_b64 if cached is not None else None
        return _photo_text(str(form), data)

    async def _reload(self) -> None:
        """Take every escalation in the store that is newer than this replica's, then put into the
        store those it does not have (from this replica's files, or taken while it failed). Under
        the lock."""
        assert self._shared is not None
        seen: set[str] = set()
        for key in await self._shared_call(self._shared.keys(KEY_PREFIX)):
            document = await self._shared_call(self._shared.get(key))
            if document is None:
                continue
            record_id, rev = str(document["id"]), int(document["rev"])
            seen.add(record_id)
            if rev > self._revs.get(record_id, 0):
                kind = ChangeKind.ADDED if record_id not in self._records else ChangeKind.UPDATED
                photo = await self._photo_for(document, ChangeKind.UPDATED)
                self._install(_from_document(document, photo), rev, kind, origin=False)
        for record_id in [r for r in self._records if r not in seen]:
            record = self._records[record_id]
            if record.status == ENDED:
                continue  # ended here and gone from the store meanwhile: nothing to share
            rev = max(self._revs.get(record_id, 0), 1)
            await self._put(record, rev)
            self._revs[record_id] = rev
            await self._publish(ChangeKind.ADDED, record, rev)

    def _start_resync(self) -> None:
        if self._resync is None or self._resync.done():
            self._resync = asyncio.create_task(self._offer_unshared(), name="escalation-queue-resync")

    async def _offer_unshared(self) -> None:
        """Offer the escalations the store did not take again, until it has them all."""
        assert self._shared is not None
        while self._unshared:
            await asyncio.sleep(self.shared_retry_s)
            async with self._lock:
                with contextlib.suppress(SharedUnavailable):
                    for record_id in list(self._unshared):
                        record = self._records.get(record_id)
                        if record is None:
                            self._unshared.discard(record_id)
                            continue
                        stored = await self._shared_call(self._shared.get(_key(record_id)))
                        rev = max(self._revs.get(record_id, 0), int(stored["rev"]) if stored else 0) + 1
                        await self._put(record, rev)
                        self._revs[record_id] = rev
                        await self._publish(
                            ChangeKind.ADDED if stored is None else ChangeKind.UPDATED, record, rev
                        )
                        log.info("escalation %s is shared again", record_id)

    # --- internals: files and timers ------------------------------------------------------

    def _save(self, record: EscalationRecord) -> None:
        """Store a snapshot of the record on the writer thread; the loop never waits for the disk."""
        snapshot = _snapshot(record)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # at start-up, before serving: written here and now
            future: Future[object] = Future()
            try:
                future.set_result(self.store.save(snapshot))
            except Exception as exc:  # noqa: BLE001 - any failure is a storage failure, reported
                future.set_exception(exc)
            self._written(record.id, future)
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="escalation-store")
        write = loop.run_in_executor(self._writer, self.store.save, snapshot)
        self._writes[write] = (record.id, time.monotonic())
        write.add_done_callback(lambda done: self._written(self._writes.pop(done)[0], done))

    def _written(self, record_id: str, done: asyncio.Future[object] | Future[object]) -> None:
        if done.cancelled():  # the loop is closing: nothing is known about this write
            return
        error = done.exception()
        if error is None:
            self._failed.discard(record_id)  # this version is on disk: the earlier failure is repaired
            return
        self._failed.add(record_id)
        kind = type(error).__name__
        self.storage_problem = {"kind": kind, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        log.error("escalation %s could not be saved (%s)", record_id, kind)  # no path, no content

    def _start_evict_timer(self, record_id: str) -> None:
        self._stop_evict_timer(record_id)
        self._evict_timers[record_id] = asyncio.create_task(
            self._evict(record_id), name=f"evict-ended-{record_id}"
        )

    def _stop_evict_timer(self, record_id: str) -> None:
        task = self._evict_timers.pop(record_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _evict(self, record_id: str) -> None:
        await asyncio.sleep(self.ended_grace_s)
        async with self._lock:
            self._evict_timers.pop(record_id, None)
            record = self._records.get(record_id)
            if record is None or record.status != ENDED:
                return
            rev = self._revs.pop(record_id, 0)
            del self._records[record_id]  # its file stays until the retention purge
            self._notify(QueueChange(ChangeKind.REMOVED, _snapshot(record)))  # open consoles drop it
            if self._shared is not None:  # each replica tries: the first still finding it ended deletes it
                with contextlib.suppress(SharedUnavailable):
                    stored = await self._shared_call(self._shared.get(_key(record_id)))
                    if stored is not None and stored.get("status") == ENDED and int(stored["rev"]) == rev:
                        await self._shared_call(self._shared.delete(_key(record_id)))
                        await self._shared_call(self._shared.delete_bytes(_key(record_id)))

    def _start_claim_timer(self, record: EscalationRecord) -> None:
        self._stop_claim_timer(record.id)
        self._claim_timers[record.id] = asyncio.create_task(
            self._expire_claim(record.id, record.clinician or "", len(record.events)),
            name=f"claim-timeout-{record.id}",
        )

    def _stop_claim_timer(self, record_id: str) -> None:
        task = self._claim_timers.pop(record_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _expire_claim(self, record_id: str, clinician: str, claim_mark: int) -> None:
        """Free a claim not followed by a join in time; shared, only if it is still that claim in
        the store (a join on another replica wins), whichever replica's timer fires first."""
        await asyncio.sleep(self.claim_timeout_s)

        def decide(record: EscalationRecord) -> bool:
            if record.status != CLAIMED or record.clinician != clinician or len(record.events) != claim_mark:
                return False  # joined, released or claimed again since (here or on another replica)
            record.clinician = None
            self._move(record, WAITING, ChangeKind.CLAIM_EXPIRED, SYSTEM)
            return True

        async with self._lock:
            self._claim_timers.pop(record_id, None)
            if record_id not in self._records:
                return
            try:
                await self._change(record_id, ChangeKind.CLAIM_EXPIRED, decide)
            except QueueError:  # the store failed: try again after another timeout
                record = self._records.get(record_id)
                if record is not None and record.status == CLAIMED and record_id not in self._claim_timers:
                    self._claim_timers[record_id] = asyncio.create_task(
                        self._expire_claim(record_id, clinician, claim_mark),
                        name=f"claim-timeout-{record_id}",
                    )


_CONTENT = ("level", "reasons", "rule_ids", "summary", "transcript", "similar_cases")


def _refreshed(known: EscalationRecord, raised: EscalationRecord) -> EscalationRecord:
    """``known`` with the content of the same escalation raised again (status and claim kept)."""
    fresh = _snapshot(known)
    for name in _CONTENT:
        setattr(fresh, name, getattr(raised, name))
    fresh.best_frame_jpeg_b64 = raised.best_frame_jpeg_b64 or known.best_frame_jpeg_b64
    return fresh


def _check_mine(record: EscalationRecord, clinician: str, states: Iterable[EscalationStatus]) -> None:
    if record.clinician != clinician:
        raise NotAllowed("only the clinician who claimed this escalation can do that")
    if record.status not in states:
        raise NotAllowed(f"this escalation is {record.status.replace('_', ' ')}")
