"""Clinician sign-in and sessions, and the tokens that open a patient's room.

Accounts come from ``settings.clinician.accounts`` and the accounts file (``web/accounts.py``),
re-read when the file changes. Passwords are argon2 hashes; there is no default password.
A session is a signed, timestamped cookie (itsdangerous, keyed by ``SECRET_KEY``). It ends
``session_max_age_s`` after sign-in, or ``session_idle_timeout_s`` after it was last used: every
use re-issues it with a fresh timestamp (``refresh_session``), so the idle clock survives a restart.
Signing out revokes its nonce in ``revoked_sessions.json`` next to the audit log (0600, replaced
atomically, entries dropped once the cookie would have expired anyway), so a restart does not
bring it back while every other session stays signed in. Once the server shares state
(``share``: Redis with ``REDIS_URL``), the sign-out is also revoked there and every request checks
it (``signed_in``), so a cookie signed out on one replica is refused on all of them. If the
shared store fails, each replica still refuses what it holds itself (its file) and says so in
its log; the console keeps working, because a clinician locked out of it misses escalations.
Without ``SECRET_KEY`` (development) a random key is drawn per process, so sessions and tokens
end with the process.

Sign-in limits cannot lock a clinician out: wrong passwords are counted per (username, address)
pair and per address, never per username alone, so an attacker failing ``ada`` from one address
does not stop Ada signing in from hers. Guessing from many addresses is slowed by the per-address
limits and argon2, and logged as a warning once a username fails from several in a minute.

A patient room token names one session and has no expiry of its own: it is good only while that
session's room is live, which the routes check (``web/clinician.py``), so it ends with the session
and never in the middle of one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from configs.settings import ClinicianAccount, Settings
from web.accounts import AccountError, read_accounts_file
from web.shared import SharedStore, StoreError

SESSION_COOKIE = "clinician_session"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/clinician"
MAX_TRACKED_KEYS = 10_000
REVOKED_FILE = "revoked_sessions.json"  # next to the audit log: a folder the server writes to
REVOKED_FAMILY = "clinician-session"  # the shared store's set of signed-out session nonces
SHARED_TIMEOUT_S = 0.5  # a hung Redis must not hold the console: past this, this replica's list
NO_ACCOUNTS_MESSAGE = (
    'No clinician accounts: create one with python -m web.accounts add USERNAME "Display Name"'
)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clinician:
    """A signed-in clinician; ``csrf_token`` is bound to this session."""

    username: str
    display_name: str
    csrf_token: str = ""


class LoginRateLimited(Exception):
    """Too many failed sign-ins for this username or address; try again after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many attempts; retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class FailureLimiter:
    """At most ``attempts`` failures per key in a sliding ``window_s``."""

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float]) -> None:
        self.attempts, self.window_s, self._clock = attempts, window_s, clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()  # sign-ins are checked in worker threads

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        with self._lock:
            failures, now = self._failures[key], self._clock()
            while failures and failures[0] <= now - self.window_s:
                failures.popleft()
            if not failures:
                self._failures.pop(key, None)
                return 0.0
            return failures[0] + self.window_s - now if len(failures) >= self.attempts else 0.0

    def fail(self, key: str) -> int:
        """Count one failure for ``key``; returns how many it has in the window now."""
        with self._lock:
            failures, now = self._failures[key], self._clock()
            failures.append(now)
            while failures and failures[0] <= now - self.window_s:
                failures.popleft()
            if len(self._failures) > MAX_TRACKED_KEYS:  # keys an attacker makes up do not pile up
                for stale in [k for k, f in self._failures.items() if f[-1] <= now - self.window_s]:
                    del self._failures[stale]
            return len(failures)


class RevokedSessions:
    """Signed-out session nonces, each until its cookie would have expired anyway, kept on disk.

    The file is small (one entry per sign-out in the last ``session_max_age_s``), 0600, and
    replaced atomically, so a crash mid-write leaves the old list. If it cannot be read at start,
    ``readable`` is False and the caller refuses every cookie issued before this start (a
    clinician signs in again) rather than honour a cookie that may have been signed out.
    """

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path, self._clock = path, clock
        self._lock = threading.Lock()  # sign-out runs off the event loop
        self._until: dict[str, float] = {}
        self.readable = True
        try:
            data = json.loads(path.read_text())
            self._until = {str(n): float(t) for n, t in data["revoked"].items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.readable = False
            log.error(
                "the revoked-sessions file cannot be read: sessions signed in before this start are refused"
            )

    def __contains__(self, nonce: str) -> bool:
        until = self._until.get(nonce)
        return until is not None and until > self._clock()

    def add(self, nonce: str, until: float) -> None:
        """Revoke ``nonce`` until ``until`` and save the list (a failed save keeps it in memory)."""
        with self._lock:
            now = self._clock()
            self._until = {n: t for n, t in self._until.items() if t > now}
            self._until[nonce] = until
            try:
                self._save(dict(self._until))
            except OSError as exc:
                log.error("the revoked-sessions file could not be written (%s)", type(exc).__name__)

    def _save(self, entries: dict[str, float]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"revoked": entries}, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self.path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


def _serializer(secret: bytes, salt: str, clock: Callable[[], float]) -> URLSafeTimedSerializer:
    class _Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return URLSafeTimedSerializer(
        secret, salt=salt, signer=_Signer, signer_kwargs={"digest_method": hashlib.sha256}
    )


class Auth:
    """Accounts, password checks, session cookies, CSRF tokens and patient room tokens."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        attempts_per_minute: int = 5,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        key = settings.secret_key.get_secret_value() if settings.secret_key else ""
        if key:
            secret = key.encode()
        else:
            secret = secrets.token_bytes(32)
            log.warning(
                "SECRET_KEY is not set: clinician sessions and patient room tokens use a random key "
                "and end when this process stops"
            )
        self._sessions = _serializer(secret, "clinician-session", clock)
        self._patient_tokens = _serializer(secret, "patient-room", clock)
        self._csrf_key = hmac.new(secret, b"csrf", hashlib.sha256).digest()
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        revoked_file = settings.path(settings.clinician.audit_log).parent / REVOKED_FILE
        self._revoked = RevokedSessions(revoked_file, clock)
        # Cookies signed before this start are refused only when the revocations are unknown.
        self._not_before = 0 if self._revoked.readable else int(clock())
        self._shared: SharedStore | None = None  # set by ``share`` once the server has opened it
        self._shared_failing = False
        self._unshared: dict[str, float] = {}  # sign-outs the store missed: nonce -> until, told again
        self._last_seen: dict[str, float] = {}  # nonce -> last use, for a stream holding an old cookie
        self._seen_lock = threading.Lock()
        self._by_pair = FailureLimiter(attempts_per_minute, 60.0, clock)
        self._by_address = FailureLimiter(attempts_per_minute * 4, 60.0, clock)
        self._by_user = FailureLimiter(attempts_per_minute * 4, 60.0, clock)  # a warning, never a lock
        self._accounts_path = settings.path(settings.clinician.accounts_file)
        self._accounts_stamp: int | None = -1
        self._accounts: dict[str, ClinicianAccount] = {}
        if not self.accounts():
            log.warning(NO_ACCOUNTS_MESSAGE)

    # --- accounts -------------------------------------------------------------------------

    def accounts(self) -> dict[str, ClinicianAccount]:
        """Every account by username: settings first, then the file (re-read when it changes)."""
        try:
            stamp: int | None = self._accounts_path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp != self._accounts_stamp:
            accounts = {a.username: a for a in self.settings.clinician.accounts}
            try:
                from_file = read_accounts_file(self._accounts_path)
            except (AccountError, ValueError, OSError):
                log.warning("the clinician accounts file cannot be read; using the configured accounts only")
                from_file = []
            for account in from_file:
                if account.username in accounts:
                    log.warning("clinician account defined twice; the configured one is used")
                    continue
                accounts[account.username] = account
            self._accounts, self._accounts_stamp = accounts, stamp
        return self._accounts

    def setup_message(self) -> str | None:
        """What the console shows when nobody can sign in (development only)."""
        if self.accounts() or self.settings.app_env != "development":
            return None
        return NO_ACCOUNTS_MESSAGE

    def display_name(self, username: str | None) -> str | None:
        if username is None:
            return None
        account = self.accounts().get(username)
        return account.display_name if account else username

    def authenticate(self, username: str, password: str, address: str = "-") -> Clinician | None:
        """The clinician when the password is right, else None; raises LoginRateLimited.

        Refused before the password is checked only when this address is limited: for all
        usernames (``4 * attempts_per_minute`` failures a minute) or for this one
        (``attempts_per_minute``). Failures from other addresses never count against it.
        """
        username = username.strip().lower()
        keys = ((self._by_pair, f"{address}|{username}"), (self._by_address, address))
        wait = max(limiter.retry_after(key) for limiter, key in keys)
        if wait > 0:
            raise LoginRateLimited(wait)
        account = self.accounts().get(username)
        if account is not None and self._verify(account.password_hash, password):
            return Clinician(account.username, account.display_name)
        if account is None:
            self._verify(self._dummy(), password)  # the same time whether or not the user exists
        for limiter, key in keys:
            limiter.fail(key)
        if self._by_user.fail(username) == self._by_user.attempts:
            log.warning("one username failed to sign in %d times within a minute", self._by_user.attempts)
        return None

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    # --- sessions -------------------------------------------------------------------------

    def issue_session(self, clinician: Clinician) -> str:
        """A session cookie value for ``clinician``, signed in now."""
        return self._sessions.dumps(
            {"u": clinician.username, "n": secrets.token_urlsafe(16), "i": int(self._clock())}
        )

    def verify_session(self, cookie: str | None) -> Clinician | None:
        """The signed-in clinician, or None for a missing, forged, expired, idle or revoked cookie."""
        payload = self._load(cookie)
        if payload is None:
            return None
        account = self.accounts().get(payload["u"])
        if account is None:
            return None  # the account was removed
        return Clinician(account.username, account.display_name, self._csrf_for(payload["n"]))

    def refresh_session(self, cookie: str | None) -> str | None:
        """The clinician used this session now: the cookie to send back, with a fresh idle clock.

        None when the cookie is no longer valid. The sign-in time, hence the 8-hour limit, stays.
        """
        payload = self._load(cookie)
        if payload is None:
            return None
        now = self._clock()
        idle = self.settings.clinician.session_idle_timeout_s
        with self._seen_lock:
            self._last_seen = {n: t for n, t in self._last_seen.items() if now - t <= idle}
            self._last_seen[payload["n"]] = now
        return self._sessions.dumps({"u": payload["u"], "n": payload["n"], "i": payload["i"]})

    def revoke_session(self, cookie: str | None) -> None:
        """Sign out: the cookie is refused from now on, even if a copy is kept, and after a restart.

        Writes a small file: call it off the event loop.
        """
        payload = self._load(cookie)
        if payload is not None:
            self._revoked.add(payload["n"], payload["i"] + self.settings.clinician.session_max_age_s)
            with self._seen_lock:
                self._last_seen.pop(payload["n"], None)

    def share(self, store: SharedStore | None) -> None:
        """Check and record sign-outs in ``store`` too (every replica's), or stop (None)."""
        self._shared = store

    async def signed_in(self, cookie: str | None) -> Clinician | None:
        """``verify_session``, and not signed out on any replica (the shared store's revocations)."""
        clinician = self.verify_session(cookie)
        if clinician is None or self._shared is None:
            return clinician
        payload = self._load(cookie)
        assert payload is not None  # verify_session just read it
        try:
            revoked = await asyncio.wait_for(
                self._shared.is_revoked(REVOKED_FAMILY, payload["n"]), SHARED_TIMEOUT_S
            )
        except (StoreError, TimeoutError):
            self._note_shared_failing(True)
            return clinician  # this replica's own sign-outs were checked above
        self._note_shared_failing(False)
        await self._share_missed_sign_outs()
        return None if revoked else clinician

    async def sign_out(self, cookie: str | None) -> None:
        """Sign out on every replica: here (a small file write, off the loop) and in the shared store."""
        payload = self._load(cookie)
        await asyncio.to_thread(self.revoke_session, cookie)
        if payload is None or self._shared is None:
            return
        self._unshared[payload["n"]] = payload["i"] + self.settings.clinician.session_max_age_s
        await self._share_missed_sign_outs()

    async def _share_missed_sign_outs(self) -> None:
        """Tell the shared store every sign-out it has not heard of yet (kept here until it has)."""
        for nonce, until in list(self._unshared.items()):
            if self._shared is None:
                return
            try:
                await asyncio.wait_for(self._shared.revoke(REVOKED_FAMILY, nonce, until), SHARED_TIMEOUT_S)
            except (StoreError, TimeoutError):
                self._note_shared_failing(True)  # signed out here; told again at the next request
                return
            self._unshared.pop(nonce, None)

    def _note_shared_failing(self, failing: bool) -> None:
        if failing and not self._shared_failing:
            log.error("sign-outs cannot be shared: each replica refuses only the sign-outs it holds itself")
        elif not failing and self._shared_failing:
            log.info("sign-outs are shared again")
        self._shared_failing = failing

    def check_csrf(self, clinician: Clinician, token: str | None) -> bool:
        # As bytes: a header may carry any character, and compare_digest refuses non-ASCII text.
        given = (token or "").encode("utf-8", "surrogateescape")
        return bool(token) and hmac.compare_digest(clinician.csrf_token.encode(), given)

    def _load(self, cookie: str | None) -> dict[str, Any] | None:
        if not cookie:
            return None
        limits = self.settings.clinician
        try:
            payload, signed = self._sessions.loads(
                cookie, max_age=limits.session_max_age_s, return_timestamp=True
            )
        except BadData:
            return None
        if not isinstance(payload, dict) or not {"u", "n", "i"} <= payload.keys():
            return None
        nonce, issued = payload["n"], payload["i"]
        if not (isinstance(nonce, str) and isinstance(issued, int)) or nonce in self._revoked:
            return None
        now = self._clock()
        with self._seen_lock:
            last_used = max(signed.timestamp(), self._last_seen.get(nonce, 0.0))
        if issued < self._not_before or now - issued > limits.session_max_age_s:
            return None
        if now - last_used > limits.session_idle_timeout_s:
            return None
        return payload

    def _csrf_for(self, nonce: str) -> str:
        return hmac.new(self._csrf_key, nonce.encode(), hashlib.sha256).hexdigest()[:32]

    def cookie_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Response.set_cookie``."""
        return {
            "max_age": self.settings.clinician.session_max_age_s,
            "path": COOKIE_PATH,
            "httponly": True,
            "samesite": "strict",
            "secure": self.settings.app_env != "development",
        }

    # --- patient room tokens --------------------------------------------------------------

    def issue_patient_token(self, session_id: str) -> str:
        """A token that opens the room of ``session_id`` only, while that session is live."""
        return self._patient_tokens.dumps(session_id)

    def verify_patient_token(self, token: str | None, session_id: str) -> bool:
        """True when ``token`` was issued here for ``session_id``.

        No expiry: a fixed one could cut a live session. The caller also checks that the session
        is live (``web/clinician.py``): a token is no good once its session has ended.
        """
        if not token:
            return False
        try:
            bound = self._patient_tokens.loads(token)
        except BadData:
            return False
        return isinstance(bound, str) and hmac.compare_digest(bound.encode(), session_id.encode())
