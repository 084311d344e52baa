"""One resumable HTTP download: ``dest.part`` grows until it is complete and verified, then becomes ``dest``.

An interrupted download leaves ``dest.part``, never ``dest``: only a complete, verified file gets
the final name, so a later run cannot mistake a partial one for finished. The next attempt (or
the next run) asks the server for the rest with a ``Range`` header. Every failure a user can meet
becomes a ``FetchError`` carrying its ``Failure`` (``rag/download_messages.py``): one line that
names the cause and the fix, and the kind that sets the exit status.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from agent.download_failure import DownloadFailed, Failure
from rag.download_messages import MESSAGES, shown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
JPEG_MAGIC = b"\xff\xd8\xff"
_DNS_HINTS = (
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "getaddrinfo failed",
    "no address associated",
    "name resolution",
)


class FetchError(DownloadFailed):
    """A download failed. ``fatal`` stops the whole run (a missing image does not)."""

    def __init__(self, failure: Failure, *, fatal: bool = True, status: int | None = None) -> None:
        super().__init__(failure)
        self.fatal = fatal
        self.status = status


_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


class _Interrupted(Exception):
    pass


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    status: str  # "downloaded" | "resumed" | "present"


def image_problem(path: Path) -> str | None:
    """Why a saved image is not a complete PNG (or JPEG), or None."""
    size = path.stat().st_size
    if size < 16:
        return f"{size} bytes"
    with path.open("rb") as handle:
        head = handle.read(8)
        handle.seek(-12, os.SEEK_END)
        tail = handle.read(12)
    if head.startswith(PNG_MAGIC):
        return None if PNG_END in tail else "PNG cut short (no IEND chunk)"
    if head.startswith(JPEG_MAGIC):
        return None if tail.rstrip(b"\x00").endswith(b"\xff\xd9") else "JPEG cut short"
    return "not a PNG or JPEG file"


def _disk_full(dest: Path) -> FetchError:
    return FetchError(MESSAGES["disk_full"].render(path=dest, where=dest.parent))


def _connect_error(url: str, exc: Exception) -> FetchError:
    host = urlsplit(url).hostname or shown(url)
    text = f"{exc} {exc.__cause__ or ''}".lower()
    if any(hint in text for hint in _DNS_HINTS):
        return FetchError(MESSAGES["dns"].render(host=host))
    return FetchError(MESSAGES["connect"].render(host=host, error=type(exc).__name__))


def _http_error(url: str, status: int, custom_base: bool) -> FetchError:
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    if status == 404:
        key = "not_found_elsewhere" if custom_base else "not_found"
        return FetchError(MESSAGES[key].render(name=name, url=shown(url)), fatal=False, status=404)
    key = {401: "unauthorized", 403: "forbidden", 407: "proxy_login"}.get(status)
    if key is None:
        key = "server_error" if status >= 500 else "other_status"
    return FetchError(MESSAGES[key].render(name=name, status=status), status=status)


def _attempt(client: httpx.Client, url: str, part: Path, custom_base: bool) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # byte ranges of the file itself, not of a gzip stream
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416:  # our .part is not a prefix of what the server has
            part.unlink(missing_ok=True)
            raise _Interrupted("range not satisfiable")
        if response.status_code >= 400:
            raise _http_error(url, response.status_code, custom_base)
        length = response.headers.get("content-length")
        if response.status_code == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("content-range", ""))
            if not match or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _Interrupted("unexpected content range")
        else:
            offset = 0  # the server sent the whole file
        expected = offset + int(length) if length is not None else None
        try:
            with part.open("ab" if offset else "wb") as out:
                for chunk in response.iter_bytes():  # as received: a drop keeps every byte so far
                    out.write(chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(part) from None
            raise
    if expected is not None and part.stat().st_size != expected:
        raise _Interrupted(f"got {part.stat().st_size} of {expected} bytes")


def fetch(
    client: httpx.Client,
    url: str,
    dest: Path,
    *,
    verify: Callable[[Path], str | None] | None = None,
    retries: int = 3,
    backoff_s: float = 0.5,
    custom_base: bool = True,
) -> Fetched:
    """Download ``url`` to ``dest`` unless a verified copy is there; resume a ``dest.part``."""
    if dest.exists() and (verify is None or verify(dest) is None):
        return Fetched(dest, dest.stat().st_size, "present")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed = part.exists() and part.stat().st_size > 0
    failure: FetchError | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            _attempt(client, url, part, custom_base)
        except FetchError as exc:
            if exc.status not in _RETRY_STATUSES:
                raise
            failure = exc
            continue
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            failure = _connect_error(url, exc)
            continue
        except (httpx.TransportError, _Interrupted) as exc:
            have = part.stat().st_size if part.exists() else 0
            failure = FetchError(
                MESSAGES["interrupted"].render(name=dest.name, have=have, error=type(exc).__name__)
            )
            continue
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(part) from None
            raise FetchError(MESSAGES["cannot_write"].render(path=part, error=exc.strerror)) from None
        bad = verify(part) if verify else None
        if bad:
            part.unlink(missing_ok=True)
            failure = FetchError(MESSAGES["bad_file"].render(name=dest.name, problem=bad))
            continue
        os.replace(part, dest)
        return Fetched(dest, dest.stat().st_size, "resumed" if resumed else "downloaded")
    assert failure is not None
    raise failure
