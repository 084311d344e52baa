"""The retention purge: ended escalation records past the retention are deleted, nothing else."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from agent.escalation import EscalationRecord, EscalationStatus, EscalationStore
from agent.policy import Urgency
from configs.settings import REPO_ROOT, Settings
from web.purge import main


def a_record(
    session_id: str, *, ended_days_ago: float | None = None, raised_days_ago: float = 0
) -> EscalationRecord:
    record = EscalationRecord.create(
        session_id=session_id,
        level=Urgency.URGENT,
        reasons=["Spreading redness with fever"],
        rule_ids=["cellulitis_fever"],
        summary="Red, warm patch on the shin.",
        transcript=[("patient", "My leg is red and hot.")],
        best_frame_jpeg_b64="/9j/AAAA",
    )
    record.created_at = (datetime.now(UTC) - timedelta(days=raised_days_ago)).isoformat(timespec="seconds")
    if ended_days_ago is not None:
        at = (datetime.now(UTC) - timedelta(days=ended_days_ago)).isoformat(timespec="seconds")
        record.status = EscalationStatus.ENDED
        record.events = [
            {"at": record.created_at, "event": "claimed", "by": "ada"},
            {"at": at, "event": "ended", "by": "ada", "outcome": "completed"},
        ]
    return record


def stored(settings: Settings) -> tuple[EscalationStore, dict[str, EscalationRecord]]:
    store = EscalationStore(settings.path(settings.escalations_dir))
    records = {
        "old": a_record("a", ended_days_ago=45, raised_days_ago=46),
        # raised long ago but ended recently: the retention counts from the end
        "raised_long_ago": a_record("b", ended_days_ago=3, raised_days_ago=60),
        "recent": a_record("c", ended_days_ago=1, raised_days_ago=1),
        "still_waiting": a_record("d", raised_days_ago=90),
    }
    for record in records.values():
        store.save(record)
    return store, records


def left(store: EscalationStore) -> set[str]:
    return {p.stem for p in store.directory.glob("*.json")}


def test_the_purge_deletes_only_records_that_ended_before_the_retention(settings: Settings) -> None:
    store, records = stored(settings)
    out = io.StringIO()

    assert main([], settings=settings, stdout=out) == 0

    assert left(store) == {records[k].id for k in ("raised_long_ago", "recent", "still_waiting")}
    assert out.getvalue().startswith("deleted 1 ended escalation records older than 30 days")
    assert "leg" not in out.getvalue() and records["old"].id not in out.getvalue()


def test_a_dry_run_deletes_nothing_and_says_what_it_would_delete(settings: Settings) -> None:
    store, records = stored(settings)
    out = io.StringIO()

    assert main(["--dry-run", "--json"], settings=settings, stdout=out) == 0

    assert left(store) == {r.id for r in records.values()}
    assert json.loads(out.getvalue()) == {
        "dry_run": True,
        "deleted": 1,
        "kept": 2,
        "active": 1,
        "unreadable": 0,
        "retention_days": 30,
    }


def test_the_command_reads_the_retention_from_the_environment(settings: Settings) -> None:
    store, records = stored(settings)
    env = {
        **os.environ,
        "ESCALATIONS_DIR": str(store.directory),
        "ESCALATIONS__RETENTION_DAYS": "2",
    }

    done = subprocess.run(
        [sys.executable, "-m", "web.purge", "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["deleted"], report["kept"], report["retention_days"]) == (2, 1, 2)
    assert left(store) == {records["recent"].id, records["still_waiting"].id}


def test_a_retention_of_zero_days_is_refused() -> None:
    env = {**os.environ, "ESCALATIONS__RETENTION_DAYS": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "web.purge", "--dry-run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "ESCALATIONS__RETENTION_DAYS must be more than 0" in done.stderr
