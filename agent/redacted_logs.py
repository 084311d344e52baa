"""The one logging set-up of every entry point: ``configs.logs`` with ``agent.pii.redact``.

configs is the bottom layer and cannot import the redactor; this is where the two meet. Every
process we start (the server, the phone bridge, the tools) calls ``setup_redacted_logging`` so
that every line it writes to stderr, its own, pipecat's, a library's, a traceback, a Python
warning, has been through ``redact``.
"""

from __future__ import annotations

from agent import pii
from configs.logs import setup_logging


def setup_redacted_logging(level: str, log_format: str) -> None:
    """Root logging at ``level`` in ``log_format`` ("text" or "json"), every line redacted.

    The redactor is built here, at start-up, rather than on the first line a session logs: it
    takes seconds, and a redactor that cannot be built stops the process before it serves anyone.
    """
    pii.warm_up()
    setup_logging(level, log_format, redact=pii.redact)
