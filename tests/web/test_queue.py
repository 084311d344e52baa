"""The clinician queue: claiming, the claim timeout, ordering, persistence and live changes."""

from __future__ import annotations

import asyncio
import json
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
