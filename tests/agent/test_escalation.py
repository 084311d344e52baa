"""Escalation records: typed, persisted atomically, read back whole; what the agent says."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.channel import Channel
from agent.escalation import (
    EscalationRecord,
    EscalationStatus,
    EscalationStore,
    awaiting_clinician_message,
    ended_at,
    escalation_message,
)
from agent.policy import Urgency


def a_record(session_id: str = "s1", summary: str = "Concern: a mole.") -> EscalationRecord:
    return EscalationRecord.create(
        session_id=session_id,
        level=Urgency.URGENT,
        reasons=["a bleeding mole"],
        rule_ids=["changing_mole"],
        summary=summary,
        transcript=[("patient", "My mole bleeds.")],
        best_frame_jpeg_b64="/9j/AAAA",
    )


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


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


@pytest.mark.usefixtures("permissive_umask")
def test_a_record_file_is_readable_by_its_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    store = EscalationStore(tmp_path / "esc")
    record = a_record()
    first = store.save(record)
    record.summary = "Concern: a mole, now bleeding."
    again = store.save(record)  # replaced: the new file is 0600 too

    assert first == again
    assert stat.S_IMODE(again.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert [p.name for p in store.directory.iterdir()] == [f"{record.id}.json"]


def test_a_write_that_fails_part_way_leaves_the_previous_record_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EscalationStore(tmp_path / "esc")
    record = a_record(summary="The first version.")
    path = store.save(record)

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    record.summary = "The second version."
    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.save(record)
    monkeypatch.undo()

    assert json.loads(path.read_text())["summary"] == "The first version."
    assert [p.name for p in store.directory.iterdir()] == [path.name]  # no partial file left behind


def test_unreadable_files_are_skipped_by_name_and_the_other_records_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = EscalationStore(tmp_path / "esc")
    good = [a_record("s1"), a_record("s2")]
    for record in good:
        store.save(record)
    (store.directory / "truncated.json").write_text('{"id": "abc", "summary": "Marisol says her')
    (store.directory / "fields.json").write_text(json.dumps({"id": "x", "summary": "Marisol"}))
    (store.directory / "list.json").write_text("[1, 2]")
    (store.directory / "binary.json").write_bytes(b"\xff\xfe\x00")

    loaded = store.all()

    assert sorted(r.id for r in loaded) == sorted(r.id for r in good)
    assert sorted(store.unreadable) == ["binary.json", "fields.json", "list.json", "truncated.json"]
    assert "truncated.json" in caplog.text and "Marisol" not in caplog.text


def ended(record: EscalationRecord, days_ago: float) -> EscalationRecord:
    at = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(timespec="seconds")
    record.status = EscalationStatus.ENDED
    record.events = [{"at": at, "event": "claimed", "by": "ada"}, {"at": at, "event": "ended", "by": "ada"}]
    return record


def test_purge_deletes_only_records_that_ended_before_the_cut_off(tmp_path: Path) -> None:
    store = EscalationStore(tmp_path / "esc")
    old = ended(a_record("old"), days_ago=40)
    recent = ended(a_record("recent"), days_ago=2)
    waiting = a_record("waiting")
    waiting.created_at = (datetime.now(UTC) - timedelta(days=90)).isoformat(timespec="seconds")
    for record in (old, recent, waiting):
        store.save(record)
    (store.directory / "broken.json").write_text("{")
    cutoff = datetime.now(UTC) - timedelta(days=30)

    dry = store.purge(cutoff, dry_run=True)
    assert (dry.deleted, dry.kept, dry.active, dry.unreadable) == (1, 1, 1, 1)
    assert len(list(store.directory.glob("*.json"))) == 4

    done = store.purge(cutoff)
    assert (done.deleted, done.kept, done.active, done.unreadable) == (1, 1, 1, 1)
    names = sorted(p.name for p in store.directory.glob("*.json"))
    assert names == sorted(["broken.json", f"{recent.id}.json", f"{waiting.id}.json"])
    assert ended_at(waiting) is None and ended_at(recent) is not None


def test_an_emergency_says_to_call_the_emergency_number_first() -> None:
    message = escalation_message(Urgency.EMERGENCY, "112")
    assert message.index("call 112") < message.index("clinician")
    assert "clinician" in escalation_message(Urgency.URGENT, "112")


def test_company_lines_vary_give_no_advice_and_repeat_emergency_advice() -> None:
    lines = {awaiting_clinician_message(n, Urgency.URGENT, "911") for n in range(1, 4)}
    assert len(lines) == 3
    assert all("clinician" in line for line in lines)
    assert "911" in awaiting_clinician_message(2, Urgency.EMERGENCY, "911")
