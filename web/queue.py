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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType

from agent.escalation import EscalationOutcome, EscalationRecord, EscalationStatus, EscalationStore
from agent.policy import Urgency

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
log = logging.getLogger(__name__)


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
    """Every escalation of this process, and the ones still waiting from before."""

    def __init__(
        self,
        store: EscalationStore,
        *,
        claim_timeout_s: float = 120.0,
        ended_grace_s: float = ENDED_GRACE_S,
        stalled_after_s: float = STALLED_AFTER_S,
    ) -> None:
        self.store = store
        self.claim_timeout_s = claim_timeout_s
        self.ended_grace_s = ended_grace_s
        self.stalled_after_s = stalled_after_s
        self._records: dict[str, EscalationRecord] = {}
        self._lock = asyncio.Lock()
        self._claim_timers: dict[str, asyncio.Task[None]] = {}
        self._evict_timers: dict[str, asyncio.Task[None]] = {}
        self._subscribers: set[Subscription] = set()
        self._writer: ThreadPoolExecutor | None = None
        self._writes: dict[asyncio.Future[object], tuple[str, float]] = {}  # pending: id, started
        self._failed: set[str] = set()  # records whose latest write failed
        self.storage_problem: dict[str, str] | None = None  # the last failure: kind and time only
        self.unreadable_at_start = 0
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
        """``storage``: ``failing`` while a record's latest write failed or a write hangs, else ``ok``;
        the last failure (its kind and time, nothing of the record), the writes still pending and
        the files skipped as unreadable at start."""
        now = time.monotonic()
        stalled = any(now - started > self.stalled_after_s for _, started in self._writes.values())
        return {
            "storage": "failing" if self._failed or stalled else "ok",
            "last_error": dict(self.storage_problem) if self.storage_problem else None,
            "pending_writes": len(self._writes),
            "stalled": stalled,
            "unreadable_at_start": self.unreadable_at_start,
        }

    def subscribe(self, maxsize: int = 256) -> Subscription:
        """Every change from now on (``async for change in queue.subscribe()``); close it when done."""
        subscription = Subscription(self, maxsize)
        self._subscribers.add(subscription)
        return subscription

    # --- changes --------------------------------------------------------------------------

    async def add(self, record: EscalationRecord) -> None:
        """Queue and store a new escalation; a known id (the same escalation, raised) has its content
        refreshed and stored again (status and claim are kept)."""
        async with self._lock:
            known = self._records.get(record.id)
            if known is None:
                self._records[record.id] = record
                self._changed(record, ChangeKind.ADDED)
                return
            for name in ("level", "reasons", "rule_ids", "summary", "transcript", "similar_cases"):
                setattr(known, name, getattr(record, name))
            known.best_frame_jpeg_b64 = record.best_frame_jpeg_b64 or known.best_frame_jpeg_b64
            self._changed(known, ChangeKind.UPDATED)

    async def claim(self, record_id: str, clinician: str) -> EscalationRecord:
        """Take an escalation: exactly one clinician wins; the others get ``AlreadyClaimed``."""
        async with self._lock:
            record = self._find(record_id)
            if record.clinician == clinician and record.status in (CLAIMED, JOINED, HANDED_BACK):
                return record
            if record.status != WAITING:
                if record.clinician is not None and record.status != ENDED:
                    raise AlreadyClaimed(record.clinician)
                raise NotAllowed(f"this escalation is {record.status.replace('_', ' ')}")
            record.clinician = clinician
            self._move(record, CLAIMED, ChangeKind.CLAIMED, clinician)
            self._start_claim_timer(record)
            self._changed(record, ChangeKind.CLAIMED)
            return record

    async def release(self, record_id: str, clinician: str) -> EscalationRecord:
        """Give a claim back before joining."""
        async with self._lock:
            record = self._mine(record_id, clinician, (CLAIMED,))
            record.clinician = None
            self._move(record, WAITING, ChangeKind.RELEASED, clinician)
            self._stop_claim_timer(record_id)
            self._changed(record, ChangeKind.RELEASED)
            return record

    async def mark_joined(self, record_id: str, clinician: str) -> EscalationRecord:
        async with self._lock:
            record = self._mine(record_id, clinician, (CLAIMED, JOINED, HANDED_BACK))
            self._stop_claim_timer(record_id)
            self._move(record, JOINED, ChangeKind.JOINED, clinician)
            self._changed(record, ChangeKind.JOINED)
            return record

    async def hand_back(self, record_id: str, clinician: str) -> EscalationRecord:
        """The clinician leaves the room; the assistant carries on (the clinician may join again)."""
        async with self._lock:
            record = self._mine(record_id, clinician, (JOINED,))
            self._move(record, HANDED_BACK, ChangeKind.HANDED_BACK, clinician)
            self._changed(record, ChangeKind.HANDED_BACK)
            return record

    async def end(
        self, record_id: str, clinician: str, outcome: EscalationOutcome | str = EscalationOutcome.COMPLETED
    ) -> EscalationRecord:
        if outcome not in OUTCOMES:
            raise NotAllowed(f"the outcome is one of {', '.join(OUTCOMES)}")
        outcome = EscalationOutcome(outcome)
        async with self._lock:
            record = self._mine(record_id, clinician, (CLAIMED, JOINED, HANDED_BACK))
            self._stop_claim_timer(record_id)
            self._move(record, ENDED, ChangeKind.ENDED, clinician, outcome=outcome)
            self._changed(record, ChangeKind.ENDED)
            return record

    async def reopen(self, record_id: str, by: str = "patient") -> EscalationRecord:
        """A handed-back or ended escalation waits for a clinician again (the patient asked again)."""
        async with self._lock:
            record = self._find(record_id)
            if record.status in (HANDED_BACK, ENDED):
                record.clinician = None
                self._move(record, WAITING, ChangeKind.REOPENED, by)
                self._changed(record, ChangeKind.REOPENED)
            return record

    async def flush(self, within_s: float | None = None) -> bool:
        """Wait for the writes queued so far; False if some are still pending after ``within_s``."""
        pending = list(self._writes)
        if not pending:
            return True
        _, still = await asyncio.wait(pending, timeout=within_s)
        return not still

    async def close(self) -> None:
        """Stop the timers, end every subscription and wait (a while) for the pending writes."""
        timers = [*self._claim_timers.values(), *self._evict_timers.values()]
        for task in timers:
            task.cancel()
        for task in timers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._claim_timers.clear()
        self._evict_timers.clear()
        for subscription in list(self._subscribers):
            subscription.close()
        if not await self.flush(CLOSE_FLUSH_S):
            log.error("clinician queue: %d escalation writes still pending at close", len(self._writes))
        if self._writer is not None:
            self._writer.shutdown(wait=False)
            self._writer = None

    # --- internals ------------------------------------------------------------------------

    def _find(self, record_id: str) -> EscalationRecord:
        record = self._records.get(record_id)
        if record is None:
            raise UnknownEscalation("no such escalation")
        return record

    def _mine(self, record_id: str, clinician: str, states: Iterable[EscalationStatus]) -> EscalationRecord:
        record = self._find(record_id)
        if record.clinician != clinician:
            raise NotAllowed("only the clinician who claimed this escalation can do that")
        if record.status not in states:
            raise NotAllowed(f"this escalation is {record.status.replace('_', ' ')}")
        return record

    @staticmethod
    def _move(
        record: EscalationRecord, status: EscalationStatus, event: ChangeKind, by: str, **extra: str
    ) -> None:
        record.status = status
        at = datetime.now(UTC).isoformat(timespec="seconds")
        record.events.append({"at": at, "event": event, "by": by, **extra})

    def _changed(self, record: EscalationRecord, kind: ChangeKind) -> None:
        self._save(record)
        if kind == ChangeKind.ENDED:
            self._start_evict_timer(record.id)
        elif kind == ChangeKind.REOPENED:
            self._stop_evict_timer(record.id)
        self._notify(QueueChange(kind, _snapshot(record)))

    def _notify(self, change: QueueChange) -> None:
        for subscription in list(self._subscribers):
            subscription.push(change)

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
            if record is not None and record.status == ENDED:
                del self._records[record_id]  # its file stays until the retention purge
                self._notify(QueueChange(ChangeKind.REMOVED, _snapshot(record)))  # open consoles drop it

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
        await asyncio.sleep(self.claim_timeout_s)
        async with self._lock:
            self._claim_timers.pop(record_id, None)
            record = self._records.get(record_id)
            if record is None or record.status != CLAIMED or record.clinician != clinician:
                return
            if len(record.events) != claim_mark:
                return  # claimed again since
            record.clinician = None
            self._move(record, WAITING, ChangeKind.CLAIM_EXPIRED, SYSTEM)
            self._changed(record, ChangeKind.CLAIM_EXPIRED)
