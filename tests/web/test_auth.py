"""Clinician sign-in, session cookies and patient room tokens."""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from itsdangerous import URLSafeTimedSerializer

from configs.settings import ClinicianAccount, Settings, load_settings
from web.accounts import add_account, remove_account
from web.auth import NO_ACCOUNTS_MESSAGE, Auth, LoginRateLimited

PASSWORD = "correct horse battery staple"
# Cheap argon2 parameters keep the tests quick; a hash carries its own parameters.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@cache
def password_hash(password: str = PASSWORD) -> str:
    return FAST_HASHER.hash(password)


def make_settings(tmp_path: Path, *, accounts: bool = True, **overrides: Any) -> Settings:
    listed = [ClinicianAccount(username="ada", display_name="Dr Ada Lovelace", password_hash=password_hash())]
    overrides.setdefault("secret_key", "a test key that is long enough to sign things")
    return load_settings(
        escalations_dir=tmp_path / "escalations",
        clinician={
            "accounts": listed if accounts else [],
            "accounts_file": tmp_path / "clinicians.json",
            "audit_log": tmp_path / "audit.log",
            "session_max_age_s": 3600,
            "patient_token_ttl_s": 600,
        },
        **overrides,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(tmp_path: Path, clock: Clock) -> Auth:
    return Auth(make_settings(tmp_path), clock=clock, hasher=FAST_HASHER)


def test_the_right_password_signs_in_and_the_cookie_is_recognised(auth: Auth) -> None:
    clinician = auth.authenticate("Ada", PASSWORD)

    assert clinician is not None and clinician.display_name == "Dr Ada Lovelace"
    signed_in = auth.verify_session(auth.issue_session(clinician))
    assert signed_in is not None and signed_in.username == "ada"
    assert auth.check_csrf(signed_in, signed_in.csrf_token)


def test_a_wrong_password_and_an_unknown_user_are_both_refused(auth: Auth) -> None:
    assert auth.authenticate("ada", "correct horse battery stapler") is None
    assert auth.authenticate("ada", "") is None
    assert auth.authenticate("grace", PASSWORD) is None


def test_an_expired_session_cookie_is_refused(auth: Auth, clock: Clock) -> None:
    cookie = auth.issue_session(auth.authenticate("ada", PASSWORD))
    clock.now += 3599
    assert auth.verify_session(cookie) is not None
    clock.now += 2
    assert auth.verify_session(cookie) is None


def test_a_forged_or_tampered_cookie_is_refused(tmp_path: Path, auth: Auth) -> None:
    forger = Auth(make_settings(tmp_path, secret_key="somebody else's key, guessed"), hasher=FAST_HASHER)
    forged = forger.issue_session(forger.authenticate("ada", PASSWORD))
    genuine = auth.issue_session(auth.authenticate("ada", PASSWORD))
    payload, _, signature = genuine.rpartition(".")
    tampered = f"{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    unsigned = URLSafeTimedSerializer("").dumps({"u": "ada", "n": "x"})

    for cookie in (forged, tampered, unsigned, "ada", "", None):
        assert auth.verify_session(cookie) is None


def test_signing_out_revokes_a_copied_cookie(auth: Auth) -> None:
    cookie = auth.issue_session(auth.authenticate("ada", PASSWORD))
    auth.revoke_session(cookie)
    assert auth.verify_session(cookie) is None


def test_each_session_has_its_own_csrf_token(auth: Auth) -> None:
    clinician = auth.authenticate("ada", PASSWORD)
    first = auth.verify_session(auth.issue_session(clinician))
    second = auth.verify_session(auth.issue_session(clinician))
    assert first.csrf_token != second.csrf_token
    assert not auth.check_csrf(first, second.csrf_token)
    assert not auth.check_csrf(first, None)


def test_accounts_from_the_file_sign_in_and_lose_their_session_when_removed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, accounts=False)
    accounts_file = settings.path(settings.clinician.accounts_file)
    add_account(accounts_file, "grace", "Dr Grace Hopper", "a different long password")
    auth = Auth(settings, hasher=FAST_HASHER)
    cookie = auth.issue_session(auth.authenticate("grace", "a different long password"))
    assert auth.verify_session(cookie).display_name == "Dr Grace Hopper"

    remove_account(accounts_file, "grace")
    os.utime(accounts_file, ns=(0, 0))  # a different modification time, however fast the file system

    assert auth.verify_session(cookie) is None
    assert auth.authenticate("grace", "a different long password") is None


def test_a_patient_token_opens_its_own_room_only(auth: Auth) -> None:
    token = auth.issue_patient_token("room-a")
    assert auth.verify_patient_token(token, "room-a")
    assert not auth.verify_patient_token(token, "room-b")
    assert not auth.verify_patient_token(token + "x", "room-a")
    assert not auth.verify_patient_token(None, "room-a")


def test_an_expired_patient_token_is_refused(auth: Auth, clock: Clock) -> None:
    token = auth.issue_patient_token("room-a")
    clock.now += 601
    assert not auth.verify_patient_token(token, "room-a")


def test_a_session_cookie_is_no_patient_token_and_the_other_way_round(auth: Auth) -> None:
    cookie = auth.issue_session(auth.authenticate("ada", PASSWORD))
    token = auth.issue_patient_token("ada")
    assert not auth.verify_patient_token(cookie, "ada")
    assert auth.verify_session(token) is None


def test_there_is_no_default_password(tmp_path: Path) -> None:
    auth = Auth(make_settings(tmp_path, accounts=False), hasher=FAST_HASHER)

    assert auth.accounts() == {}
    for username, password in [("admin", "admin"), ("admin", ""), ("clinician", "password"), ("", "")]:
        assert auth.authenticate(username, password, address=f"10.0.0.{len(password)}") is None
    assert auth.setup_message() == NO_ACCOUNTS_MESSAGE
    assert "python -m web.accounts add" in NO_ACCOUNTS_MESSAGE


def test_the_no_accounts_hint_is_for_development_only(tmp_path: Path) -> None:
    auth = Auth(make_settings(tmp_path, accounts=False, app_env="staging"), hasher=FAST_HASHER)
    assert auth.setup_message() is None


def test_without_secret_key_each_process_draws_its_own_key_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, secret_key=None)
    with caplog.at_level(logging.WARNING, logger="web.auth"):
        first = Auth(settings, hasher=FAST_HASHER)
    second = Auth(settings, hasher=FAST_HASHER)

    assert any("SECRET_KEY is not set" in r.getMessage() for r in caplog.records)
    cookie = first.issue_session(first.authenticate("ada", PASSWORD))
    assert first.verify_session(cookie) is not None
    assert second.verify_session(cookie) is None  # a restart signs everyone out
    assert not second.verify_patient_token(first.issue_patient_token("room-a"), "room-a")


def test_with_secret_key_a_session_survives_a_restart(tmp_path: Path) -> None:
    first = Auth(make_settings(tmp_path), hasher=FAST_HASHER)
    second = Auth(make_settings(tmp_path), hasher=FAST_HASHER)
    cookie = first.issue_session(first.authenticate("ada", PASSWORD))
    assert second.verify_session(cookie).username == "ada"


def test_repeated_wrong_passwords_lock_the_username_for_a_minute(auth: Auth, clock: Clock) -> None:
    for attempt in range(5):
        assert auth.authenticate("ada", f"guess number {attempt}", address=f"10.0.0.{attempt}") is None

    with pytest.raises(LoginRateLimited) as limited:
        auth.authenticate("ada", PASSWORD, address="10.0.0.99")
    assert 0 < limited.value.retry_after_s <= 60

    clock.now += 61
    assert auth.authenticate("ada", PASSWORD) is not None


def test_one_address_cannot_try_many_usernames(auth: Auth) -> None:
    for attempt in range(20):
        assert auth.authenticate(f"user{attempt}", "guess", address="203.0.113.7") is None
    with pytest.raises(LoginRateLimited):
        auth.authenticate("ada", PASSWORD, address="203.0.113.7")
    assert auth.authenticate("ada", PASSWORD, address="198.51.100.1") is not None


def test_cookies_are_http_only_strict_and_secure_outside_development(tmp_path: Path) -> None:
    development = Auth(make_settings(tmp_path)).cookie_options()
    staging = Auth(make_settings(tmp_path, app_env="staging")).cookie_options()

    assert development["httponly"] and development["samesite"] == "strict"
    assert development["secure"] is False and staging["secure"] is True
    assert development["max_age"] == 3600 and development["path"] == "/clinician"
