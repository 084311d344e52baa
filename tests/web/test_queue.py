"""The clinician queue: claiming, the claim timeout, ordering, persistence, live changes, storage off the
event loop and visible when it fails, and ended escalations leaving memory."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.escalation import EscalationOutcome, EscalationRecord, EscalationStatus, EscalationStore
from agent.policy import Urgency
from web.queue import AlreadyClaimed, ChangeKind, EscalationQueue, NotAllowed, waiting_seconds


def escalation(
    level: Urgency = Urgency.URGENT, minutes_ago: float = 0.0, session_id: str = "sess1"
) -> EscalationRecord:
    record = EscalationRecord.create(
        session_id=session_id,
        level=level,
        reasons=["Spreading redness with fever"],
        rule_ids=["cellulitis_fever"],
        summary="Red, warm patch on the shin for two days, with fever.",
        transcript=[("agent", "What brings you in?"), ("patient", "My leg is red and hot.")],
    )
    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    record.created_at = created.isoformat(timespec="seconds")
    return record


@pytest.fixture
def store(tmp_path: Path) -> EscalationStore:
    return EscalationStore(tmp_path / "escalations")


async def test_two_clinicians_claiming_at_once_exactly_one_wins(store: EscalationStore) -> None:
    queue = EscalationQueue(store)
    record = escalation()
    await queue.add(record)

    results = await asyncio.gather(
        queue.claim(record.id, "ada"), queue.claim(record.id, "grace"), return_exceptions=True
    )

    won = [r for r in results if isinstance(r, EscalationRecord)]
    lost = [r for r in results if isinstance(r, AlreadyClaimed)]
    assert len(won) == 1 and len(lost) == 1
    winner = won[0].clinician
    assert lost[0].claimed_by == winner
    assert queue.get(record.id).status == "claimed"
    assert [e["event"] for e in queue.get(record.id).events] == ["claimed"]
    await queue.close()


async def test_the_most_urgent_come_first_then_the_oldest_and_ended_ones_last(store: EscalationStore) -> None:
    queue = EscalationQueue(store)
    routine_old = escalation(Urgency.ROUTINE, minutes_ago=30)
    urgent_new = escalation(Urgency.URGENT, minutes_ago=1)
    urgent_old = escalation(Urgency.URGENT, minutes_ago=10)
    emergency_new = escalation(Urgency.EMERGENCY, minutes_ago=0)
    emergency_done = escalation(Urgency.EMERGENCY, minutes_ago=60)
    for record in (routine_old, urgent_new, urgent_old, emergency_new, emergency_done):
        await queue.add(record)
    await queue.claim(emergency_done.id, "ada")
    await queue.end(emergency_done.id, "ada", EscalationOutcome.COMPLETED)

    order = [r.id for r in queue.list()]

    assert order == [emergency_new.id, urgent_old.id, urgent_new.id, routine_old.id, emergency_done.id]
    await queue.close()


async def test_a_claim_without_a_join_goes_back_to_waiting(store: EscalationStore) -> None:
    queue = EscalationQueue(store, claim_timeout_s=0.05)
    record = escalation()
    await queue.add(record)
    changes = queue.subscribe()

    await queue.claim(record.id, "ada")
    await asyncio.sleep(0.3)

    current = queue.get(record.id)
    assert current.status == "waiting" and current.clinician is None
    assert [(e["event"], e["by"]) for e in current.events] == [
        ("claimed", "ada"),
        ("claim_expired", "system"),
    ]
    assert [(await anext(changes)).kind for _ in range(2)] == ["claimed", "claim_expired"]
    assert (await queue.claim(record.id, "grace")).clinician == "grace"  # free for the next clinician
    await queue.close()


async def test_joining_in_time_keeps_the_claim(store: EscalationStore) -> None:
    queue = EscalationQueue(store, claim_timeout_s=0.05)
    record = escalation()
    await queue.add(record)

    await queue.claim(record.id, "ada")
    await queue.mark_joined(record.id, "ada")
    await asyncio.sleep(0.2)

    assert queue.get(record.id).status == "joined"
    assert queue.get(record.id).clinician == "ada"
    await queue.close()


async def test_only_the_claiming_clinician_moves_an_escalation_on(store: EscalationStore) -> None:
    queue = EscalationQueue(store)
    record = escalation()
    await queue.add(record)
    await queue.claim(record.id, "ada")

    for change in (queue.mark_joined, queue.release, queue.end):
        with pytest.raises(NotAllowed, match="only the clinician who claimed"):
            await change(record.id, "grace")
    with pytest.raises(NotAllowed, match="claimed"):
        await queue.hand_back(record.id, "ada")  # not joined yet

    assert queue.get(record.id).status == "claimed"
    await queue.close()


async def test_each_step_records_who_and_when(store: EscalationStore) -> None:
    queue = EscalationQueue(store)
    record = escalation()
    await queue.add(record)

    await queue.claim(record.id, "ada")
    await queue.mark_joined(record.id, "ada")
    await queue.hand_back(record.id, "ada")
    await queue.mark_joined(record.id, "ada")
    await queue.end(record.id, "ada", "referred")  # as the console sends it

    events = queue.get(record.id).events
    assert [e["event"] for e in events] == ["claimed", "joined", "handed_back", "joined", "ended"]
    assert all(e["by"] == "ada" and datetime.fromisoformat(e["at"]).tzinfo is not None for e in events)
    assert events[-1]["outcome"] == EscalationOutcome.REFERRED
    assert queue.get(record.id).status is EscalationStatus.ENDED
    with pytest.raises(NotAllowed, match="ended"):
        await queue.claim(record.id, "grace")
    with pytest.raises(NotAllowed, match="outcome"):
        await queue.end(record.id, "ada", "whatever the clinician typed")
    await queue.close()


async def test_every_change_is_saved_and_unfinished_ones_come_back_after_a_restart(
    store: EscalationStore,
) -> None:
    queue = EscalationQueue(store)
    waiting, claimed, ended = (
        escalation(Urgency.URGENT),
        escalation(Urgency.EMERGENCY),
        escalation(Urgency.SOON),
    )
    for record in (waiting, claimed, ended):
        await queue.add(record)
    await queue.claim(claimed.id, "ada")
    await queue.claim(ended.id, "ada")
    await queue.end(ended.id, "ada", "completed")
    await queue.close()

    saved = json.loads((store.directory / f"{claimed.id}.json").read_text())
    assert saved["status"] == "claimed" and saved["clinician"] == "ada"

    restarted = EscalationQueue(store)
    assert {r.id for r in restarted.list()} == {waiting.id, claimed.id}
    back = restarted.get(claimed.id)
    assert back.status == "waiting" and back.clinician is None  # the lost claim is free again
    assert back.summary == claimed.summary and back.transcript == claimed.transcript
    assert store.load(ended.id).status == "ended"
    await restarted.close()


async def test_subscribers_receive_every_change_in_order(store: EscalationStore) -> None:
    queue = EscalationQueue(store)
    changes = queue.subscribe()
    record = escalation()

    await queue.add(record)
    await queue.claim(record.id, "ada")
    await queue.mark_joined(record.id, "ada")
    await queue.end(record.id, "ada", "completed")
    await queue.close()

    seen = [(change.kind, change.record.status) async for change in changes]
    assert seen == [("added", "waiting"), ("claimed", "claimed"), ("joined", "joined"), ("ended", "ended")]
    assert all(isinstance(k, ChangeKind) and isinstance(s, EscalationStatus) for k, s in seen)


async def test_adding_a_known_escalation_again_refreshes_it_but_keeps_the_claim(
    store: EscalationStore,
) -> None:
    queue = EscalationQueue(store)
    record = escalation()
    await queue.add(record)
    await queue.claim(record.id, "ada")

    fresher = EscalationRecord.from_dict(record.to_dict())
    fresher.transcript = [*record.transcript, {"role": "patient", "text": "Now it is spreading."}]
    fresher.status, fresher.clinician = "waiting", None
    await queue.add(fresher)

    current = queue.get(record.id)
    assert len(current.transcript) == 3
    assert current.status == "claimed" and current.clinician == "ada"
    await queue.close()


async def test_a_handed_back_escalation_can_wait_for_a_clinician_again(store: EscalationStore) -> None:
    queue = EscalationQueue(store)
    record = escalation()
    await queue.add(record)
    await queue.claim(record.id, "ada")
    await queue.mark_joined(record.id, "ada")
    await queue.hand_back(record.id, "ada")

    await queue.reopen(record.id)

    assert queue.get(record.id).status == "waiting" and queue.get(record.id).clinician is None
    assert queue.get(record.id).events[-1]["event"] == "reopened"
    assert (await queue.claim(record.id, "grace")).clinician == "grace"
    await queue.close()


def test_time_waiting_is_counted_from_when_the_escalation_was_raised() -> None:
    record = escalation(minutes_ago=5)
    assert 299 <= waiting_seconds(record) <= 302


class BlockingStore(EscalationStore):
    """A store whose writes hang until ``release`` is set (a hung disk)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.release = threading.Event()
        self.started = threading.Event()

    def save(self, record: EscalationRecord) -> Path:
        self.started.set()
        assert self.release.wait(10), "the test never released the write"
        return super().save(record)


class FailingStore(EscalationStore):
    """A store whose writes fail while ``failing`` (a full or read-only disk)."""

    failing = True

    def save(self, record: EscalationRecord) -> Path:
        if self.failing:
            raise PermissionError(13, "Permission denied", str(self.directory / f"{record.id}.json"))
        return super().save(record)


async def test_a_hung_disk_does_not_freeze_the_queue_or_the_other_sessions(tmp_path: Path) -> None:
    store = BlockingStore(tmp_path / "escalations")
    queue = EscalationQueue(store, stalled_after_s=0.05)
    first, second = escalation(session_id="a"), escalation(session_id="b")
    beats = 0

    async def heartbeat() -> None:  # another session's work on the same loop
        nonlocal beats
        for _ in range(10):
            await asyncio.sleep(0.01)
            beats += 1

    async with asyncio.timeout(2):
        await queue.add(first)  # its write hangs on the disk
        assert await asyncio.to_thread(store.started.wait, 2)
        await asyncio.gather(heartbeat(), queue.add(second), queue.claim(first.id, "ada"))

    assert beats == 10
    assert [r.id for r in queue.list()] == [first.id, second.id]
    assert queue.get(first.id).clinician == "ada"
    await asyncio.sleep(0.1)
    assert queue.storage_status()["storage"] == "failing"  # the hang is visible
    assert queue.storage_status()["pending_writes"] == 3

    store.release.set()
    assert await queue.flush(2)
    assert json.loads((store.directory / f"{first.id}.json").read_text())["clinician"] == "ada"  # in order
    assert queue.storage_status()["storage"] == "ok"
    await queue.close()


async def test_a_failing_disk_shows_in_the_storage_status_without_personal_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FailingStore(tmp_path / "escalations")
    queue = EscalationQueue(store)
    assert queue.storage_status() == {
        "storage": "ok",
        "last_error": None,
        "pending_writes": 0,
        "stalled": False,
        "unreadable_at_start": 0,
    }
    record = escalation()

    await queue.add(record)
    await queue.flush()

    assert queue.get(record.id) is not None  # the escalation still reaches the clinicians
    status = queue.storage_status()
    assert status["storage"] == "failing"
    assert status["last_error"]["kind"] == "PermissionError"
    assert datetime.fromisoformat(status["last_error"]["at"]).tzinfo is not None
    for text in (json.dumps(status), caplog.text):
        assert "leg" not in text and "redness" not in text and str(store.directory) not in text

    store.failing = False
    await queue.claim(record.id, "ada")  # the next write of the same record succeeds
    await queue.flush()
    assert queue.storage_status()["storage"] == "ok"
    assert queue.storage_status()["last_error"]["kind"] == "PermissionError"  # still told
    await queue.close()


async def test_an_unreadable_file_is_skipped_and_counted_and_the_rest_load_at_start(
    store: EscalationStore,
) -> None:
    queue = EscalationQueue(store)
    waiting = [escalation(session_id="a"), escalation(session_id="b")]
    for record in waiting:
        await queue.add(record)
    await queue.close()
    (store.directory / "0badc0ffee.json").write_text('{"id": "0badc0ffee", "transcript": [')

    restarted = EscalationQueue(store)

    assert {r.id for r in restarted.list()} == {r.id for r in waiting}
    assert restarted.storage_status()["unreadable_at_start"] == 1
    assert restarted.storage_status()["storage"] == "ok"
    await restarted.close()


async def test_an_ended_escalation_leaves_the_list_after_the_grace_period_but_stays_on_disk(
    store: EscalationStore,
) -> None:
    queue = EscalationQueue(store, ended_grace_s=0.1)
    done, reopened, claimed = (escalation(session_id=s) for s in "abc")
    for record in (done, reopened, claimed):
        await queue.add(record)
        await queue.claim(record.id, "ada")
    await queue.end(done.id, "ada")
    await queue.end(reopened.id, "ada")
    await queue.reopen(reopened.id)
    changes = queue.subscribe()

    assert done.id in {r.id for r in queue.list()}  # the console shows it as ended for a while
    await asyncio.sleep(0.3)

    assert {r.id for r in queue.list()} == {reopened.id, claimed.id}
    assert queue.get(done.id) is None and queue.for_session("a") is None
    await queue.close()
    # Open consoles are told to drop it, once, and of the others nothing changed.
    assert [(c.kind, c.record.id) async for c in changes] == [(ChangeKind.REMOVED, done.id)]
    assert store.load(done.id).status == "ended"  # on disk until the retention purge
