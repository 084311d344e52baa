"""Structured logging: JSON lines in production, a session id on every line, no personal data.

The project logs through the standard ``logging`` module with *event names and ids*, never the
patient's words. pipecat logs through loguru, and at DEBUG it would print transcripts: its
records are forwarded here at WARNING and above only, and every line passes the redaction
filter as a last line of defence.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from loguru import logger as loguru_logger
from pythonjsonlogger.json import JsonFormatter

session_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(session_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(session_id)s %(message)s"


_redacting = threading.local()
# The redactor's own libraries log while it runs; their lines carry no patient data.
REDACTOR_LOGGERS = ("presidio-analyzer", "presidio-anonymizer")


class _ContextFilter(logging.Filter):
    """Stamps the session id and scrubs the message with ``redact`` (if given)."""

    def __init__(self, redact: Callable[[str], str] | None) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "session_id"):
            record.session_id = session_id_var.get()
        if self._redact is None or record.name.startswith(REDACTOR_LOGGERS):
            return True
        if getattr(_redacting, "active", False):  # a line logged while redacting another
            record.msg, record.args = "[line withheld: logged during redaction]", None
            return True
        _redacting.active = True
        try:
            record.msg = self._redact(record.getMessage())
            record.args = None
        finally:
            _redacting.active = False
        return True


def make_handler(
    stream_or_path: object, log_format: str, redact: Callable[[str], str] | None = None
) -> logging.Handler:
    """A handler writing ``log_format`` lines to a stream or a file path."""
    if isinstance(stream_or_path, (str, Path)):
        handler: logging.Handler = logging.FileHandler(stream_or_path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream_or_path)  # type: ignore[arg-type]
    if log_format == "json":
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_ContextFilter(redact))
    return handler


def _forward_loguru(message: object) -> None:
    record = message.record  # type: ignore[attr-defined]
    logging.getLogger(record["name"] or "pipecat").log(record["level"].no, "%s", record["message"])


def quiet_libraries() -> None:
    """Libraries that chatter at INFO write only warnings and errors to our logs."""
    for noisy in ("aioice", "aiortc", "httpx", "chromadb", "urllib3", "faster_whisper", *REDACTOR_LOGGERS):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def setup_logging(
    level: str = "INFO", log_format: str = "text", redact: Callable[[str], str] | None = None
) -> None:
    """Configure the root logger once for the process (idempotent)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(sys.stderr, log_format, redact))
    root.setLevel(level.upper())
    quiet_libraries()
    loguru_logger.remove()
    loguru_logger.add(_forward_loguru, level="WARNING")
