"""Structured logs: one JSON object per line, a session id on each, no personal data."""

from __future__ import annotations

import io
import json
import logging

from agent.pii import redact
from configs.logs import make_handler, session_id_var


def test_json_lines_carry_the_session_id_and_never_personal_data() -> None:
    stream = io.StringIO()
    handler = make_handler(stream, "json", redact)
    log = logging.getLogger("test.logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    token = session_id_var.set("abc123")
    try:
        log.info("caller said: my name is Jane Doe, phone 07700 900123")
        log.warning("escalation: level=%s", "urgent")
    finally:
        session_id_var.reset(token)
        log.removeHandler(handler)
    lines = stream.getvalue().strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 2
    assert all(r["session_id"] == "abc123" for r in records)
    assert records[1]["level"] == "WARNING" and records[1]["message"] == "escalation: level=urgent"
    assert "Jane" not in lines[0] and "07700" not in lines[0] and "<NAME>" in records[0]["message"]
