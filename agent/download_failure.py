"""Why a download script failed, as a typed record that prints as one line and exits with its own status.

``scripts/download_models.sh`` (``agent.backends.download``) and ``scripts/download_scin.sh``
(``rag.download``) meet the same failures: HTTP 401/403/404, a missing program or client library,
missing credentials, a dropped connection. One enum gives each kind a distinct exit status an
operator (or a deployment script) can branch on, and every message template lives in a
``Message`` constant so that the runbook's table (docs/runbook.md, "Download failures") can be
checked against the code instead of drifting from it.

Standard library only, and ``agent/__init__`` imports nothing: the scripts import this module
before anything else, so it still works in a half-installed ``.venv`` (the missing-client case).
Messages carry repository ids, URLs and paths, never a token or a credential.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import Enum

RUNBOOK = "docs/runbook.md#download-failures"


class FailureKind(Enum):
    """What went wrong; the value is the script's exit status (1, 2, 126, 127 stay bash's and argparse's)."""

    NO_NETWORK = 10
    UNAUTHORIZED = 11  # HTTP 401
    FORBIDDEN = 12  # HTTP 403
    NOT_FOUND = 13  # HTTP 404
    MISSING_CLI = 14  # the program the script runs is not there
    MISSING_CLIENT = 15  # the Python client library is not installed
    MISSING_CREDENTIALS = 16
    INTERRUPTED = 17  # the connection dropped before a file was complete
    DISK_FULL = 18
    SERVER_ERROR = 19  # HTTP 5xx
    BAD_CONTENT = 20  # the server sent something that is not the file
    OFFLINE_MODE = 21
    LOCAL_ERROR = 22  # this machine refused: permissions, settings
    UNEXPECTED = 23
    STOPPED = 130  # Ctrl-C: the shell's own convention for SIGINT

    @property
    def exit_status(self) -> int:
        return self.value


@dataclass(frozen=True)
class Failure:
    """One failure, rendered: what happened (``cause``) and what to do (``fix``)."""

    kind: FailureKind
    cause: str
    fix: str

    def line(self, script: str) -> str:
        """The single stderr line: ``<script>: <cause>: <fix> (see the runbook)``, newlines folded."""
        text = f"{script}: {self.cause}: {self.fix} (see {RUNBOOK})"
        return " ".join(text.split())


class _Placeholders(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"<{key}>"


@dataclass(frozen=True)
class Message:
    """A message template (``str.format`` fields) for one kind of failure."""

    kind: FailureKind
    cause: str
    fix: str

    def render(self, **fields: object) -> Failure:
        values = {key: str(value) for key, value in fields.items()}
        return Failure(self.kind, self.cause.format_map(values), self.fix.format_map(values))

    def documented(self, script: str) -> str:
        """The line as the runbook's table shows it: every field as ``<field>``, no "see" suffix."""
        return f"{script}: {self.cause.format_map(_Placeholders())}: {self.fix.format_map(_Placeholders())}"


class DownloadFailed(Exception):
    """Raised with the rendered failure; the script's ``main`` prints its line and exits with its status."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.cause}: {failure.fix}")
        self.failure = failure


def report(script: str, failure: Failure) -> int:
    """Print the failure's line on stderr; the exit status to return."""
    print(failure.line(script), file=sys.stderr, flush=True)
    return failure.kind.exit_status
