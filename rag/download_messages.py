"""Every line ``scripts/download_scin.sh`` can print on failure, with its kind (and so its exit status).

Kept apart from ``rag.download`` and ``rag.fetch`` because it imports the standard library only:
``rag.download`` needs the messages before it dares import httpx (a half-installed ``.venv`` is
one of the failures), and the runbook's table (docs/runbook.md, "Download failures") is checked
against this mapping by a test. URLs are shown without user, password or query string, so a
proxy login or a signed URL never reaches the terminal.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from agent.download_failure import FailureKind, Message

SCRIPT = "download_scin"
DEFAULT_BASE_URL = "https://storage.googleapis.com/dx-scin-public-data/dataset"
SCIN_REPO = "https://github.com/google-research-datasets/scin"
RERUN = "bash scripts/download_scin.sh"
PUBLIC = "the SCIN bucket is public and needs no credentials"
K = FailureKind

MESSAGES = {
    "no_python": Message(
        K.MISSING_CLI, "no Python environment at .venv/bin/python", "run bash scripts/setup.sh first"
    ),
    "no_client": Message(
        K.MISSING_CLIENT,
        "the Python package {package} is not installed in .venv",
        f"run bash scripts/setup.sh, then {RERUN} again",
    ),
    "dns": Message(
        K.NO_NETWORK,
        "cannot resolve {host} (DNS failure)",
        "check the network connection and DNS, then re-run",
    ),
    "connect": Message(
        K.NO_NETWORK,
        "cannot connect to {host} ({error})",
        "check the network connection or proxy, then re-run",
    ),
    "proxy_login": Message(
        K.MISSING_CREDENTIALS,
        "the proxy asks for credentials (HTTP 407) for {name}",
        "put them in HTTPS_PROXY (http://USER:PASSWORD@HOST:PORT) and re-run",
    ),
    "unauthorized": Message(
        K.UNAUTHORIZED,
        "401 from the bucket for {name}",
        f"{PUBLIC}: check --base-url, or ask your network admin whether a proxy wants a login",
    ),
    "forbidden": Message(
        K.FORBIDDEN,
        "403 from the bucket for {name}",
        f"{PUBLIC}: check --base-url, or ask your network admin whether a proxy blocks it",
    ),
    "not_found": Message(
        K.NOT_FOUND,
        "404 from the bucket for {name} at {url}",
        f"the bucket layout may have changed; see {SCIN_REPO}",
    ),
    "not_found_elsewhere": Message(
        K.NOT_FOUND,
        "404 from the bucket for {name} at {url}",
        f"check --base-url (default {DEFAULT_BASE_URL})",
    ),
    "server_error": Message(
        K.SERVER_ERROR,
        "{status} from the bucket for {name}",
        "the server failed (retried): wait a minute and re-run",
    ),
    "other_status": Message(
        K.UNEXPECTED, "{status} from the bucket for {name}", "check --base-url and the proxy, then re-run"
    ),
    "interrupted": Message(
        K.INTERRUPTED,
        "download of {name} interrupted after {have} bytes ({error})",
        "re-run the same command: it resumes from there",
    ),
    "stopped": Message(K.STOPPED, "stopped", "re-run the same command: it resumes where it stopped"),
    "disk_full": Message(
        K.DISK_FULL,
        "disk full while writing {path}",
        "free space in {where} (images need about 10 GB; --skip-images needs a few MB) "
        "and re-run: it resumes",
    ),
    "cannot_write": Message(
        K.LOCAL_ERROR, "cannot write {path} ({error})", "check the directory's permissions"
    ),
    "settings": Message(
        K.LOCAL_ERROR, "the settings were refused ({detail})", "fix that variable and re-run"
    ),
    "bad_file": Message(
        K.BAD_CONTENT, "{name} failed verification ({problem})", "it was deleted; re-run to fetch it again"
    ),
    "bad_csv": Message(K.BAD_CONTENT, "the SCIN files are not usable", "{detail}"),
}


def shown(url: str) -> str:
    """``url`` as it may be printed: no ``user:password@``, no query string (a signed URL's signature)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
