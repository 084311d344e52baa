"""Escalation records: what a clinician needs to take over, with no personal data in it.

A record is created by the escalation processor (``pipeline/escalation.py``) the moment a red
flag is met and stays this typed object until it is stored: an ``EscalationFrame`` carries it to
the clinician queue, which stores it (``web/queue.py``); a session with no queue (a replay, the
evaluation, a phone bridge on its own) has the escalation processor store it. Either way it is
one JSON file per escalation, written atomically. Everything textual in it has passed
``agent.pii.redact`` first. Its level, status, channel and outcomes are enums whose values are
the JSON's strings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.channel import Channel
from agent.policy import Urgency

log = logging.getLogger(__name__)


class EscalationStatus(StrEnum):
    """Where an escalation is: waiting -> claimed -> joined <-> handed_back -> ended (``web/queue.py``)."""

    WAITING = "waiting"
    CLAIMED = "claimed"
    JOINED = "joined"
    HANDED_BACK = "handed_back"
    ENDED = "ended"


class EscalationOutcome(StrEnum):
    """How the clinician who ended an escalation says it ended."""

    COMPLETED = "completed"
    REFERRED = "referred"
    EMERGENCY_SERVICES = "emergency_services"
    PATIENT_LEFT = "patient_left"


@dataclass
class EscalationRecord:
    id: str
    session_id: str
    created_at: str  # ISO 8601, UTC
    level: Urgency
    reasons: list[str]
    rule_ids: list[str]
    summary: str  # redacted
    transcript: list[dict[str, str]]  # [{"role": "patient"|"agent", "text": redacted}]
    channel: Channel = Channel.VIDEO
    similar_cases: list[dict[str, Any]] = field(default_factory=list)
    best_frame_jpeg_b64: str | None = None
    # Filled in as a clinician takes over (web/queue.py).
    status: EscalationStatus = EscalationStatus.WAITING
    clinician: str | None = None
    events: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Typed however it was built (read back from JSON, or given plain strings).
        self.level = Urgency(self.level)
        self.channel = Channel(self.channel)
        self.status = EscalationStatus(self.status)

    @classmethod
    def create(
        cls,
        *,
        session_id: str,
        level: Urgency,
        reasons: list[str],
        rule_ids: list[str],
        summary: str,
        transcript: list[tuple[str, str]],
        channel: Channel = Channel.VIDEO,
        similar_cases: list[dict[str, Any]] | None = None,
        best_frame_jpeg_b64: str | None = None,
    ) -> EscalationRecord:
        return cls(
            id=uuid.uuid4().hex[:16],
            session_id=session_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            level=level,
            reasons=list(reasons),
            rule_ids=list(rule_ids),
            summary=summary,
            transcript=[{"role": role, "text": text} for role, text in transcript],
            channel=channel,
            similar_cases=list(similar_cases or []),
            best_frame_jpeg_b64=best_frame_jpeg_b64,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EscalationRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}  # older files may hold more
        return cls(**known)


class EscalationStore:
    """One JSON file per escalation under ``directory`` (created 0700 on first use).

    Each file is written 0600 whatever the umask (it carries a camera frame and a transcript),
    to a temporary file in the same folder first, flushed to disk and then renamed over the old
    one: a crash or a full disk leaves the previous version whole, never half a record. Reading
    them all skips a file that is not a record (``unreadable``, by file name only); ``purge``
    deletes the ended ones past the retention.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.unreadable: list[str] = []  # file names skipped by the last ``all()``

    def save(self, record: EscalationRecord) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"{record.id}.json"
        data = json.dumps(record.to_dict(), indent=2).encode()
        partial = self.directory / f".{record.id}.{uuid.uuid4().hex[:8]}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        return path

    def load(self, record_id: str) -> EscalationRecord:
        return _read_record(self.directory / f"{record_id}.json")

    def all(self) -> list[EscalationRecord]:
        """Every readable record, oldest first; the names of the others go to ``unreadable``."""
        records, self.unreadable = [], []
        for path in self._files():
            try:
                records.append(_read_record(path))
            except UnreadableRecord:
                self.unreadable.append(path.name)
                log.warning("escalation file %s is not a readable record; skipped", path.name)
        return sorted(records, key=lambda r: r.created_at)

    def purge(self, older_than: datetime, *, dry_run: bool = False) -> PurgeReport:
        """Delete the ended records whose end is before ``older_than`` (none with ``dry_run``)."""
        report = PurgeReport(dry_run=dry_run)
        for path in self._files():
            try:
                record = _read_record(path)
            except UnreadableRecord:
                report.unreadable += 1
                continue
            ended = ended_at(record)
            if ended is None:
                report.active += 1
            elif ended >= older_than:
                report.kept += 1
            else:
                if not dry_run:
                    path.unlink(missing_ok=True)
                report.deleted += 1
        return report

    def _files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("*.json"))


class UnreadableRecord(ValueError):
    """A file in the escalations folder that is not a record (not JSON, or not its fields)."""


def _read_record(path: Path) -> EscalationRecord:
    try:
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict):
            raise TypeError("not an object")
        return EscalationRecord.from_dict(data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UnreadableRecord(path.name) from exc


def ended_at(record: EscalationRecord) -> datetime | None:
    """When an ended escalation ended (its last ``ended`` event), or None while it is not ended."""
    if record.status != EscalationStatus.ENDED:
        return None
    for event in reversed(record.events):
        if event.get("event") == "ended":
            try:
                at = datetime.fromisoformat(event["at"])
            except (KeyError, TypeError, ValueError):
                break
            return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    try:  # an ended record without its event: counted from when it was raised
        created = datetime.fromisoformat(record.created_at)
    except ValueError:
        return None
    return created if created.tzinfo is not None else created.replace(tzinfo=UTC)


@dataclass
class PurgeReport:
    """What a purge did (or, with ``dry_run``, would do), in counts only."""

    dry_run: bool = False
    deleted: int = 0  # ended before the cut-off
    kept: int = 0  # ended since
    active: int = 0  # not ended: never purged
    unreadable: int = 0  # not a record: left for a person to look at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- what the agent says ------------------------------------------------------------------


def escalation_message(level: Urgency, emergency_number: str) -> str:
    """What the agent says the moment it escalates: plainly, what happens next."""
    if level == Urgency.EMERGENCY:
        return (
            f"What you describe could be an emergency. Please call {emergency_number} now, or have someone "
            "take you to the nearest emergency department. I'm also connecting you with a clinician, "
            "who will join this conversation."
        )
    return (
        "I'm connecting you with a clinician now. Please stay here; they will join this "
        "conversation shortly, and I'll stay with you until they do."
    )


COMPANY_LINES = (
    "A clinician has been alerted and will join as soon as they can. I'm still here with you.",
    "Thank you for waiting. The clinician will be with you shortly; "
    "I can't give more advice before they join.",
    "I've passed on what you told me, so you won't need to repeat everything. The clinician is on the way.",
)


def awaiting_clinician_message(count: int, level: Urgency, emergency_number: str) -> str:
    """A line that keeps the patient company while a clinician is on the way (no assessment)."""
    line = COMPANY_LINES[(count - 1) % len(COMPANY_LINES)]
    if level == Urgency.EMERGENCY:
        line += f" If things get worse, or you haven't yet, please call {emergency_number} now."
    return line
