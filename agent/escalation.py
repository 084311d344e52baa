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

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.channel import Channel
from agent.policy import Urgency


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
    """One JSON file per escalation under ``directory`` (created on first use)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, record: EscalationRecord) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{record.id}.json"
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(record.to_dict(), indent=2))
        os.replace(partial, path)
        return path

    def load(self, record_id: str) -> EscalationRecord:
        return EscalationRecord.from_dict(json.loads((self.directory / f"{record_id}.json").read_text()))

    def all(self) -> list[EscalationRecord]:
        if not self.directory.exists():
            return []
        records = [
            EscalationRecord.from_dict(json.loads(p.read_text())) for p in self.directory.glob("*.json")
        ]
        return sorted(records, key=lambda r: r.created_at)


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
