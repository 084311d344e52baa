"""Escalation records: typed, persisted atomically, read back whole; what the agent says."""

from __future__ import annotations

import json
from pathlib import Path

from agent.channel import Channel
from agent.escalation import (
    EscalationRecord,
    EscalationStatus,
    EscalationStore,
    awaiting_clinician_message,
    escalation_message,
)
from agent.policy import Urgency


def test_a_record_round_trips_through_the_store(tmp_path: Path) -> None:
    store = EscalationStore(tmp_path / "esc")
    record = EscalationRecord.create(
        session_id="s1",
        level=Urgency.URGENT,
        reasons=["a bleeding mole"],
        rule_ids=["changing_mole"],
        summary="Concern: a mole.",
        transcript=[("patient", "My mole bleeds."), ("agent", "I'm connecting you.")],
    )
    path = store.save(record)
    assert path.exists() and not list((tmp_path / "esc").glob("*.partial"))
    loaded = store.load(record.id)
    assert loaded.to_dict() == record.to_dict()
    assert [r.id for r in store.all()] == [record.id]


def test_level_channel_and_status_are_enums_and_the_json_is_their_plain_values(tmp_path: Path) -> None:
    store = EscalationStore(tmp_path / "esc")
    record = EscalationRecord.create(
        session_id="s1",
        level="emergency",  # a plain string is typed on the way in
        reasons=[],
        rule_ids=[],
        summary="",
        transcript=[],
        channel=Channel.AUDIO,
    )
    assert record.level is Urgency.EMERGENCY and record.status is EscalationStatus.WAITING
    saved = json.loads(store.save(record).read_text())
    assert (saved["level"], saved["channel"], saved["status"]) == ("emergency", "audio", "waiting")
    loaded = store.load(record.id)
    assert loaded.level is Urgency.EMERGENCY and loaded.channel is Channel.AUDIO
    assert loaded.status is EscalationStatus.WAITING


def test_an_emergency_says_to_call_the_emergency_number_first() -> None:
    message = escalation_message(Urgency.EMERGENCY, "112")
    assert message.index("call 112") < message.index("clinician")
    assert "clinician" in escalation_message(Urgency.URGENT, "112")


def test_company_lines_vary_give_no_advice_and_repeat_emergency_advice() -> None:
    lines = {awaiting_clinician_message(n, Urgency.URGENT, "911") for n in range(1, 4)}
    assert len(lines) == 3
    assert all("clinician" in line for line in lines)
    assert "911" in awaiting_clinician_message(2, Urgency.EMERGENCY, "911")
