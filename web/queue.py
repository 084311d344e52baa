"""The clinician queue: escalations waiting for a clinician, and who is taking each one over.

In memory, and the one keeper of the records of the server's sessions: a record is stored when
it arrives (from the session's ``EscalationObserver``; sessions built with a queue have no
store of their own) and on every change after that, through ``EscalationStore``. The
waiting (and claimed) ones are loaded again at start, a claim lost with the last process going
back to waiting. An escalation moves waiting -> claimed -> joined <-> handed_back -> ended; only
the clinician who claimed it moves it on, a claim not followed by a join within
``claim_timeout_s`` goes back to waiting, and every move is written into ``record.events`` (who
and when).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
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

    def __init__(self, store: EscalationStore, *, claim_timeout_s: float = 120.0) -> None:
        self.store = store
        self.claim_timeout_s = claim_timeout_s
        self._records: dict[str, EscalationRecord] = {}
        self._lock = asyncio.Lock()
        self._claim_timers: dict[str, asyncio.Task[None]] = {}
        self._subscribers: set[Subscription] = set()
        self._load()

    def _load(self) -> None:
        for record in self.store.all():
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

    async def close(self) -> None:
        """Stop the claim timers and end every subscription."""
        for task in list(self._claim_timers.values()):
            task.cancel()
        for task in list(self._claim_timers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._claim_timers.clear()
        for subscription in list(self._subscribers):
            subscription.close()

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
        change = QueueChange(kind, _snapshot(record))
        for subscription in list(self._subscribers):
            subscription.push(change)

    def _save(self, record: EscalationRecord) -> None:
        try:
            self.store.save(record)
        except OSError:
            log.exception("escalation %s could not be saved", record.id)

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
