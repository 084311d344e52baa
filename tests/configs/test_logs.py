"""Structured logs: one JSON object per line, a session id on each, no personal data.

Not only our own messages: a traceback whose exception carries what the patient said, a stack,
a line pipecat logs through loguru, and a line the redactor cannot redact.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator

import pytest
from loguru import logger as loguru_logger

from agent.pii import redact
from configs.logs import make_handler, session_id_var, setup_logging

SAID = (
    "my name is Jane Doe, call me on 07700 900123 or at jane.doe@example.com, born on the 3rd of March 1980"
)
SECRETS = ("Jane", "Doe", "07700", "900123", "jane.doe", "example.com", "1980")
PLACEHOLDERS = ("<NAME>", "<PHONE>", "<EMAIL>", "<DATE_OF_BIRTH>")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging configures the whole process: put the root, loguru and the hooks back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = sys.excepthook, threading.excepthook
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)
    loguru_logger.remove()
    loguru_logger.add(sys.stderr)


def assert_clean(text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{leaked} in {text!r}"
    missing = [p for p in PLACEHOLDERS if p not in text]
    assert not missing, f"{missing} not in {text!r}"


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


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_traceback_whose_exception_carries_patient_text_is_redacted(log_format: str) -> None:
    stream = io.StringIO()
    handler = make_handler(stream, log_format, redact)
    log = logging.getLogger("test.logs.traceback")
    log.addHandler(handler)
    try:
        try:
            int(SAID)  # what aiortc does with a malformed SDP line: the line is in the message
        except ValueError:
            log.exception("Exception in ASGI application")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "Traceback (most recent call last)" in out and "ValueError: invalid literal" in out
    assert_clean(out)
    if log_format == "json":
        record = json.loads(out)
        assert record["message"] == "Exception in ASGI application" and "<NAME>" in record["exc_info"]
        assert record["name"] == "test.logs.traceback" and record["level"] == "ERROR"


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_stack_is_redacted(log_format: str) -> None:
    stream = io.StringIO()
    handler = make_handler(stream, log_format, redact)
    record = logging.makeLogRecord(
        {"name": "test.logs.stack", "levelno": logging.WARNING, "levelname": "WARNING", "msg": "slow turn"}
    )
    record.stack_info = f'Stack (most recent call last):\n  File "x.py", line 1, in f\n    say("{SAID}")'
    handler.handle(record)
    out = stream.getvalue()
    assert "slow turn" in out and "Stack (most recent call last)" in out
    assert_clean(out)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_pipecat_line_forwarded_from_loguru_is_redacted_with_its_traceback(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("INFO", log_format, redact)
    loguru_logger.error(f"Error parsing JSON message {SAID}, Expecting value")  # pipecat's own words
    try:
        raise RuntimeError(f"TTS failed on: {SAID}")
    except RuntimeError:
        loguru_logger.exception("Unable to synthesize")
    loguru_logger.debug(f"transcript: {SAID}")  # below WARNING: never forwarded
    err = capsys.readouterr().err
    assert "Error parsing JSON message" in err and "Unable to synthesize" in err
    assert "RuntimeError: TTS failed on" in err  # the traceback is forwarded, not dropped
    assert "transcript:" not in err
    assert_clean(err)
    if log_format == "json":
        records = [json.loads(line) for line in err.strip().splitlines()]
        assert [r["level"] for r in records] == ["ERROR", "ERROR"]


def test_a_line_that_cannot_be_redacted_is_withheld() -> None:
    def broken(_text: str) -> str:
        raise RuntimeError("the redactor is broken")

    for log_format in ("json", "text"):
        stream = io.StringIO()
        handler = make_handler(stream, log_format, broken)
        log = logging.getLogger("test.logs.broken")
        log.addHandler(handler)
        try:
            try:
                raise ValueError(SAID)
            except ValueError:
                log.exception("caller said %s", SAID)
        finally:
            log.removeHandler(handler)
        out = stream.getvalue()
        assert "[line withheld: redaction failed (RuntimeError)]" in out
        assert not [secret for secret in SECRETS if secret in out] and "Traceback" not in out


def test_a_line_that_cannot_be_formatted_is_reported_without_its_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = make_handler(io.StringIO(), "text", redact)
    log = logging.getLogger("test.logs.bad_arguments")
    log.propagate = False  # pytest's own capture handler raises on such a line
    log.addHandler(handler)
    try:
        log.warning("caller said %s and %s", SAID)  # one argument short
    finally:
        log.removeHandler(handler)
    err = capsys.readouterr().err
    assert "Logging error: line withheld (TypeError)" in err
    assert not [secret for secret in SECRETS if secret in err]
