"""The audit log: one entry per clinician action, with who, when and which, and no patient words."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from datetime import datetime
from pathlib import Path

import pytest

from agent.escalation import EscalationRecord
from tests.web.test_clinician_routes import OFFER, PASSWORD, api, build_console, sign_in
from web.audit import AuditEvent, AuditLog

PATIENT_NAME = "Marisol Quintana-Abernathy"
PATIENT_PHONE = "+1 415 555 0199"
PATIENT_WORDS = "the blister on my left calf started weeping yesterday"


def personal_escalation() -> EscalationRecord:
    """A record carrying text that must never reach the audit log (as if redaction had missed it)."""
    return EscalationRecord.create(
        session_id="room-a",
        level="emergency",
        reasons=["Rapidly spreading blistering rash"],
        rule_ids=["blistering_spreading"],
        summary=f"{PATIENT_NAME} reports {PATIENT_WORDS}.",
        transcript=[("patient", f"I'm {PATIENT_NAME}, call me on {PATIENT_PHONE}: {PATIENT_WORDS}")],
    )


async def test_every_clinician_action_leaves_an_entry_with_who_when_and_which(tmp_path: Path) -> None:
    console = build_console(tmp_path)
    record = personal_escalation()
    await console.queue.add(record)
    token_for_b = console.auth.issue_patient_token("room-b")
    async with console.client() as ada, console.client() as grace, console.client() as patient:
        await ada.post("/clinician/login", json={"username": "ada", "password": "wrong password here"})
        headers = await sign_in(ada)
        grace_headers = await sign_in(grace, "grace")
        await ada.post(api(record, "claim"), headers=headers)
        await grace.post(api(record, "claim"), headers=grace_headers)
        await ada.post(api(record, "join"), headers=headers, json=OFFER)
        await ada.post(api(record, "summary"), headers=headers)
        await ada.post(api(record, "hand-back"), headers=headers)
        await ada.post(api(record, "join"), headers=headers, json=OFFER)
        await ada.post(api(record, "end"), headers=headers, json={"outcome": "emergency_services"})
        await ada.post("/clinician/logout", headers=headers)
        await patient.post("/api/room/room-a/clinician", headers={"X-Room-Token": token_for_b})
    await console.queue.close()

    entries = console.audit.entries()
    assert [(e["event"], e["clinician"]) for e in entries] == [
        ("sign_in_failed", "ada"),
        ("sign_in", "ada"),
        ("sign_in", "grace"),
        ("claim", "ada"),
        ("claim_conflict", "grace"),
        ("join", "ada"),
        ("summary_requested", "ada"),
        ("hand_back", "ada"),
        ("join", "ada"),
        ("end", "ada"),
        ("sign_out", "ada"),
        ("patient_token_rejected", None),
    ]
    for entry in entries[3:11]:
        if entry["event"] != "sign_out":
            assert entry["escalation_id"] == record.id and entry["session_id"] == "room-a"
    assert entries[9]["code"] == "emergency_services"
    assert entries[0]["code"] == "wrong_credentials"
    assert entries[-1]["session_id"] == "room-a" and entries[-1]["escalation_id"] is None
    assert entries[-1]["code"] == "token_invalid"
    for entry in entries:
        assert (
            entry["time"].endswith("Z")
            and datetime.fromisoformat(entry["time"]).utcoffset().total_seconds() == 0
        )


async def test_no_patient_words_names_or_numbers_reach_the_audit_log(tmp_path: Path) -> None:
    console = build_console(tmp_path)
    record = personal_escalation()
    await console.queue.add(record)
    async with console.client() as ada, console.client() as somebody:
        # A patient's name typed as a username is not a staff name: it is not recorded either.
        await somebody.post("/clinician/login", json={"username": PATIENT_NAME, "password": PASSWORD})
        headers = await sign_in(ada)
        await ada.post(api(record, "claim"), headers=headers)
        await ada.post(api(record, "join"), headers=headers, json=OFFER)
        await ada.post(api(record, "end"), headers=headers)
    await console.queue.close()

    written = console.audit.path.read_text()
    assert len(console.audit.entries()) == 5
    for secret in (PATIENT_NAME, "Quintana", PATIENT_PHONE, "555 0199", "blister", "weeping", record.summary):
        assert secret.lower() not in written.lower()
    for turn in record.transcript:
        assert turn["text"] not in written


async def test_one_address_sending_bad_tokens_cannot_flood_the_audit_log(tmp_path: Path) -> None:
    console = build_console(tmp_path)
    long_path = "x" * 5000
    async with console.client(address="203.0.113.7") as attacker, console.client(address="10.1.2.3") as other:
        answers = [
            await attacker.get(f"/api/room/{long_path}{n}/status", headers={"X-Room-Token": "forged"})
            for n in range(40)
        ]
        for _ in range(30):  # over the sign-in limit: each refusal used to be audited too
            await attacker.post("/clinician/login", json={"username": "ada", "password": "guess"})
        from_elsewhere = await other.get("/api/room/room-a/status", headers={"X-Room-Token": "forged"})
    await console.queue.close()

    assert all(a.status_code == 403 for a in answers) and from_elsewhere.status_code == 403
    entries = console.audit.entries()
    refused = [e for e in entries if e["event"] == "patient_token_rejected"]
    rate_limited = [e for e in entries if e.get("code") == "rate_limited"]
    assert len(refused) + len(rate_limited) <= 11  # at most 10 from the attacker, and the other's one
    assert refused[-1]["session_id"] == "room-a"  # another address is still audited
    assert all(len(e["session_id"]) <= 64 for e in refused)
    assert len(console.audit.path.read_text()) < 5000  # not even one of the attacker's paths


def test_an_id_from_a_request_path_is_cut_short(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    entry = log.record(AuditEvent.PATIENT_TOKEN_REJECTED, session_id="a" * 100_000, code="token_invalid")
    log.flush()
    assert len(entry["session_id"]) == 64
    assert len(log.path.read_text()) < 300


def test_the_log_only_grows_and_only_its_owner_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "var" / "audit.log"
    for event in (AuditEvent.SIGN_IN, AuditEvent.SIGN_OUT):  # the second as after a restart
        log = AuditLog(path)
        log.record(event, clinician="ada")
        log.flush()  # each process's writes are done before the next one starts

    assert [e["event"] for e in AuditLog(path).entries()] == ["sign_in", "sign_out"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_log_is_owner_only_even_under_a_permissive_umask_and_for_a_file_made_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.log"
    path.write_text("")
    path.chmod(0o644)  # as an older version left it
    previous = os.umask(0)
    try:
        log = AuditLog(path)
        log.record(AuditEvent.SIGN_IN, clinician="ada")
        log.flush()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_hung_audit_write_does_not_hold_up_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path / "audit.log")
    release = threading.Event()
    append = log._append

    def hung_disk(line: bytes) -> None:
        assert release.wait(10), "the test never released the write"
        append(line)

    monkeypatch.setattr(log, "_append", hung_disk)
    beats = 0
    async with asyncio.timeout(2):
        log.record(AuditEvent.SIGN_IN, clinician="ada")  # returns at once: the write waits on its thread
        log.record(AuditEvent.CLAIM, clinician="ada", escalation_id="e1")
        for _ in range(5):
            await asyncio.sleep(0.01)
            beats += 1
    assert beats == 5

    release.set()
    assert [e["event"] for e in log.entries()] == ["sign_in", "claim"]  # in order, once written


def test_a_failed_audit_write_is_kept_as_a_storage_problem(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    log = AuditLog(blocked / "audit.log")

    log.record(AuditEvent.SIGN_IN, clinician="ada")
    log.flush()

    assert log.storage_problem is not None and log.storage_problem["kind"] in (
        "FileExistsError",
        "NotADirectoryError",
    )


def test_an_entry_cannot_carry_free_text(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    with pytest.raises(ValueError, match="unknown audit code"):
        log.record(AuditEvent.END, clinician="ada", code=f"spoke with {PATIENT_NAME}")
    assert log.entries() == []
