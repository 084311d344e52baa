"""The clinician audit log: who did what to which escalation, and when; append-only JSON lines.

An entry holds the UTC time, the event, the clinician's username (staff, not patient data), the
escalation and session ids and, for some events, a short code (an outcome, a refusal reason).
It never holds what a patient said, their name or their number: entries are built from those
fields only, and a code must be one of ``CODES``. An id can come from a request's path (a refused
room token names the room it tried): it is cut to ``MAX_ID_CHARS``, so a hostile path cannot make
an entry long. How many refusals one address can have audited is limited by the routes.

Entries are appended on one writer thread, in order, so a slow or hung disk never holds up the
event loop; the file is 0600 whatever the umask, and each entry is flushed to disk. A failed
append is logged (its kind only) and kept in ``storage_problem``.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.escalation import EscalationOutcome
from configs.settings import Settings

log = logging.getLogger(__name__)


class AuditEvent(StrEnum):
    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    SIGN_OUT = "sign_out"
    CLAIM = "claim"
    CLAIM_CONFLICT = "claim_conflict"
    RELEASE = "release"
    JOIN = "join"
    SUMMARY_REQUESTED = "summary_requested"
    HAND_BACK = "hand_back"
    END = "end"
    CSRF_REFUSED = "csrf_refused"
    PATIENT_REQUESTED_CLINICIAN = "patient_requested_clinician"
    PATIENT_TOKEN_REJECTED = "patient_token_rejected"


# Codes an entry may carry: why a sign-in failed, why a room token was refused, how an escalation ended.
CODES = frozenset(
    {
        "wrong_credentials",
        "rate_limited",
        "no_accounts",
        "token_in_query",
        "token_invalid",
        "session_ended",
        *EscalationOutcome,
    }
)
# Session and escalation ids are 32 hex characters: anything longer was made up by the sender.
MAX_ID_CHARS = 64


def _bounded(value: str | None) -> str | None:
    return None if value is None else str(value)[:MAX_ID_CHARS]


class AuditLog:
    """Appends one JSON line per event to ``path`` (created 0600 with its folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-log")
        self.storage_problem: dict[str, str] | None = None  # the last failed append: kind and time
        self.failing = False  # the latest append failed (``/health`` says degraded while it does)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        return cls(settings.path(settings.clinician.audit_log))

    def record(
        self,
        event: AuditEvent,
        *,
        clinician: str | None = None,
        escalation_id: str | None = None,
        session_id: str | None = None,
        code: str | None = None,
    ) -> dict[str, Any]:
        """Queue an entry for appending (on the writer thread) and return it."""
        if code is not None and code not in CODES:
            raise ValueError(f"unknown audit code {code!r}")
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": AuditEvent(event).value,
            "clinician": _bounded(clinician),
            "escalation_id": _bounded(escalation_id),
            "session_id": _bounded(session_id),
        }
        if code is not None:
            entry["code"] = str(code)  # an outcome enum as its plain value
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        self._writer.submit(self._append, line).add_done_callback(self._appended)
        return entry

    def flush(self) -> None:
        """Wait (this thread) until every entry queued so far is written."""
        self._writer.submit(lambda: None).result()

    def entries(self) -> list[dict[str, Any]]:
        """Every entry so far, oldest first (after the queued ones are written; for tests and tools)."""
        return self._writer.submit(self._read).result()

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask, and a file made before
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _appended(self, done: Future[None]) -> None:
        error = None if done.cancelled() else done.exception()
        self.failing = error is not None
        if error is not None:
            kind = type(error).__name__
            self.storage_problem = {"kind": kind, "at": datetime.now(UTC).isoformat(timespec="seconds")}
            log.error("audit entry could not be written (%s)", kind)

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
