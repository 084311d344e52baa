"""Clinician sign-in and sessions, and the tokens that open a patient's room.

Accounts come from ``settings.clinician.accounts`` and the accounts file (``web/accounts.py``),
re-read when the file changes. Passwords are argon2 hashes; there is no default password.
A session is a signed, timestamped cookie (itsdangerous, keyed by ``SECRET_KEY``) that expires
after ``session_max_age_s``; signing out revokes it in this process. Without ``SECRET_KEY``
(development) a random key is drawn per process, so sessions and tokens end with the process.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from configs.settings import ClinicianAccount, Settings
from web.accounts import AccountError, read_accounts_file

SESSION_COOKIE = "clinician_session"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/clinician"
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

    def fail(self, key: str) -> None:
        with self._lock:
            self._failures[key].append(self._clock())


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
        self._revoked: dict[str, float] = {}
        self._by_user = FailureLimiter(attempts_per_minute, 60.0, clock)
        self._by_address = FailureLimiter(attempts_per_minute * 4, 60.0, clock)
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
        """The clinician when the password is right, else None; raises LoginRateLimited."""
        username = username.strip().lower()
        keys = ((self._by_user, f"user:{username}"), (self._by_address, f"address:{address}"))
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
        """A session cookie value for ``clinician``."""
        return self._sessions.dumps({"u": clinician.username, "n": secrets.token_urlsafe(16)})

    def verify_session(self, cookie: str | None) -> Clinician | None:
        """The signed-in clinician, or None for a missing, forged, expired or revoked cookie."""
        payload = self._load(cookie)
        if payload is None:
            return None
        account = self.accounts().get(payload["u"])
        if account is None:
            return None  # the account was removed
        return Clinician(account.username, account.display_name, self._csrf_for(payload["n"]))

    def revoke_session(self, cookie: str | None) -> None:
        """Sign out: the cookie is refused from now on, even if a copy is kept."""
        payload = self._load(cookie)
        if payload is not None:
            now = self._clock()
            self._revoked = {n: t for n, t in self._revoked.items() if t > now}
            self._revoked[payload["n"]] = now + self.settings.clinician.session_max_age_s

    def check_csrf(self, clinician: Clinician, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(clinician.csrf_token, token or "")

    def _load(self, cookie: str | None) -> dict[str, Any] | None:
        if not cookie:
            return None
        try:
            payload = self._sessions.loads(cookie, max_age=self.settings.clinician.session_max_age_s)
        except BadData:
            return None
        if not isinstance(payload, dict) or not {"u", "n"} <= payload.keys() or payload["n"] in self._revoked:
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
        """A token that opens the room of ``session_id`` only, for ``patient_token_ttl_s``."""
        return self._patient_tokens.dumps(session_id)

    def verify_patient_token(self, token: str | None, session_id: str) -> bool:
        if not token:
            return False
        try:
            bound = self._patient_tokens.loads(token, max_age=self.settings.clinician.patient_token_ttl_s)
        except BadData:
            return False
        return isinstance(bound, str) and hmac.compare_digest(bound.encode(), session_id.encode())
