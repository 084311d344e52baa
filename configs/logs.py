"""Structured logging: JSON lines in production, a session id on every line, no personal data.

The project logs through the standard ``logging`` module with *event names and ids*, never the
patient's words. Libraries are another matter: pipecat logs through loguru (at DEBUG it would
print transcripts, and its warnings and errors carry text: a sentence the TTS did not speak, a
data-channel message, an error frame), and any exception's message can carry what the patient
said. So pipecat's records are forwarded here at WARNING and above only, with their tracebacks,
Python warnings and uncaught exceptions are logged too, and, given a ``redact`` function, every
handler passes the *whole* of every line through it: the message, the traceback, the stack and
any extra field. Only the fields we write ourselves (time, level, logger name, session id) are
left as they are. ``agent.redacted_logs`` is the one set-up every entry point uses: configs is the
bottom layer and cannot import the redactor itself.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from loguru import logger as loguru_logger
from pythonjsonlogger.json import JsonFormatter

session_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(session_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(session_id)s %(message)s"
# What we write ourselves on every JSON line; everything else on it is redacted.
OWN_JSON_FIELDS = frozenset({"asctime", "level", "name", "session_id"})

WITHHELD_DURING_REDACTION = "[line withheld: logged during redaction]"
WITHHELD_ON_FAILURE = "[line withheld: redaction failed ({error})]"

_redacting = threading.local()
# The redactor's own libraries log while it runs; their lines carry no patient data.
REDACTOR_LOGGERS = ("presidio-analyzer", "presidio-anonymizer")
# Joins the parts of one line (message, traceback, stack) so that they are redacted together: a
# name found in the message is then taken out of the traceback too. No redaction rule matches it.
_PART_SEPARATOR = "\n\x1e\n"


class _Scrubber:
    """``redact`` over the parts of one line, failing safe: a line it cannot redact is withheld.

    ``parts`` gives back the redacted parts, or only ``[reason]`` when the line is withheld.
    """

    def __init__(self, redact: Callable[[str], str]) -> None:
        self._redact = redact

    def parts(self, logger_name: str, parts: list[str]) -> list[str]:
        if logger_name.startswith(REDACTOR_LOGGERS):
            return parts
        if getattr(_redacting, "active", False):  # a line logged while redacting another
            return [WITHHELD_DURING_REDACTION]
        _redacting.active = True
        try:
            scrubbed = self._redact(_PART_SEPARATOR.join(parts)).split(_PART_SEPARATOR)
            if len(scrubbed) != len(parts):  # a rule took a separator: redact each part alone
                scrubbed = [self._redact(part) for part in parts]
            return scrubbed
        except Exception as error:  # noqa: BLE001 - whatever broke, the line must not go out as it is
            return [WITHHELD_ON_FAILURE.format(error=type(error).__name__)]
        finally:
            _redacting.active = False


class _RedactingTextFormatter(logging.Formatter):
    """The message, its traceback and its stack, redacted as one text."""

    def __init__(self, fmt: str, redact: Callable[[str], str]) -> None:
        super().__init__(fmt)
        self._scrubber = _Scrubber(redact)

    def format(self, record: logging.LogRecord) -> str:
        trace = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        stack = self.formatStack(record.stack_info) if record.stack_info else ""
        scrubbed = self._scrubber.parts(record.name, [record.getMessage(), trace, stack])
        # A copy: other handlers of the same record (and the caller) keep the record as it was.
        copy = logging.makeLogRecord(record.__dict__)
        copy.msg = "\n".join(part for part in scrubbed if part)
        copy.args = copy.exc_info = copy.exc_text = copy.stack_info = None
        return super().format(copy)


class _RedactingJsonFormatter(JsonFormatter):
    """Every field of the JSON line but our own (time, level, logger, session id) redacted together."""

    def __init__(self, fmt: str, redact: Callable[[str], str]) -> None:
        super().__init__(fmt, rename_fields={"levelname": "level"})
        self._scrubber = _Scrubber(redact)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        texts = {
            key: value if isinstance(value, str) else str(value)
            for key, value in log_data.items()
            if key not in OWN_JSON_FIELDS and value is not None and not isinstance(value, (bool, int, float))
        }
        scrubbed = self._scrubber.parts(str(log_data.get("name", "")), list(texts.values()))
        own = {key: value for key, value in log_data.items() if key not in texts}
        if len(scrubbed) != len(texts):  # withheld: our own fields and the reason only
            return {**{k: v for k, v in own.items() if k in OWN_JSON_FIELDS}, "message": scrubbed[0]}
        return {**own, **dict(zip(texts, scrubbed, strict=True))}


def make_handler(
    stream_or_path: object, log_format: str, redact: Callable[[str], str] | None = None
) -> logging.Handler:
    """A handler writing ``log_format`` lines to a stream or a file path, redacted with ``redact``."""
    if isinstance(stream_or_path, (str, Path)):
        handler: logging.Handler = logging.FileHandler(stream_or_path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream_or_path)  # type: ignore[arg-type]
    formatter: logging.Formatter
    if redact is not None:
        json_fmt, text_fmt = _RedactingJsonFormatter, _RedactingTextFormatter
        formatter = json_fmt(JSON_FIELDS, redact) if log_format == "json" else text_fmt(TEXT_FORMAT, redact)
    elif log_format == "json":
        formatter = JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level"})
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    handler.addFilter(_stamp_session_id)
    if redact is not None:
        handler.handleError = _withhold_logging_error  # type: ignore[method-assign]
    return handler


def _withhold_logging_error(_record: logging.LogRecord) -> None:
    """A line that could not be formatted (a wrong number of arguments, say): say so, not what it held.

    ``logging`` would print the record's message and arguments to stderr as they are.
    """
    kind = sys.exc_info()[0]
    if logging.raiseExceptions and sys.stderr:
        sys.stderr.write(f"--- Logging error: line withheld ({kind.__name__ if kind else 'unknown'}) ---\n")


def _stamp_session_id(record: logging.LogRecord) -> bool:
    if not hasattr(record, "session_id"):
        record.session_id = session_id_var.get()
    return True


def _forward_loguru(message: object) -> None:
    """A loguru record (pipecat's) as a ``logging`` record, with its traceback if it has one."""
    record = message.record  # type: ignore[attr-defined]
    exception = record["exception"]
    exc_info = (exception.type, exception.value, exception.traceback) if exception else None
    logger = logging.getLogger(record["name"] or "pipecat")
    logger.log(record["level"].no, "%s", record["message"], exc_info=exc_info)


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("uncaught").critical("uncaught exception", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


def quiet_libraries() -> None:
    """Libraries that chatter at INFO write only warnings and errors to our logs."""
    for noisy in ("aioice", "aiortc", "httpx", "chromadb", "urllib3", "faster_whisper", *REDACTOR_LOGGERS):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def setup_logging(
    level: str = "INFO", log_format: str = "text", redact: Callable[[str], str] | None = None
) -> None:
    """Configure the root logger once for the process (idempotent).

    Entry points call ``agent.redacted_logs.setup_redacted_logging``, which passes ``redact``.
    Everything that would otherwise write to stderr on its own (pipecat's loguru, Python
    warnings, uncaught exceptions in the main thread and in threads) goes through the root
    handler, so through ``redact``.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = make_handler(sys.stderr, log_format, redact)
    handler.setLevel(level.upper())  # a caller may lower the root's level for its own handlers
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_libraries()
    loguru_logger.remove()
    loguru_logger.add(_forward_loguru, level="WARNING")
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
