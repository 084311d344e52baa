"""Clinician sign-in, session cookies and patient room tokens."""

from __future__ import annotations

import json
import logging
import os
import stat
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from itsdangerous import URLSafeTimedSerializer

from configs.settings import ClinicianAccount, Settings, load_settings
from web.accounts import add_account, remove_account
from web.auth import NO_ACCOUNTS_MESSAGE, REVOKED_FILE, Auth, LoginRateLimited

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


def test_a_session_in_use_still_ends_at_its_maximum_age(auth: Auth, clock: Clock) -> None:
    cookie = auth.issue_session(auth.authenticate("ada", PASSWORD))
    for _ in range(3):  # used every 15 minutes: never idle
        clock.now += 900
        cookie = auth.refresh_session(cookie)
        assert auth.verify_session(cookie) is not None
    clock.now += 899  # 3599 s after signing in
    assert auth.verify_session(cookie) is not None
    clock.now += 2
    assert auth.verify_session(cookie) is None
    assert auth.refresh_session(cookie) is None


def test_a_session_not_used_for_the_idle_timeout_is_refused(auth: Auth, clock: Clock) -> None:
    cookie = auth.issue_session(auth.authenticate("ada", PASSWORD))
    clock.now += 1799
    fresh = auth.refresh_session(cookie)  # the clinician clicked something
    assert fresh is not None

    clock.now += 1799  # nearly an hour after signing in, but used half an hour ago
    assert auth.verify_session(fresh) is not None
    assert auth.verify_session(cookie) is not None  # an event stream opened with the first cookie
    clock.now += 2
    assert auth.verify_session(fresh) is None and auth.verify_session(cookie) is None
    assert auth.refresh_session(fresh) is None  # too late: signing in again is the only way back


def test_the_idle_clock_survives_a_restart_in_the_refreshed_cookie(tmp_path: Path, clock: Clock) -> None:
    first = Auth(make_settings(tmp_path), clock=clock, hasher=FAST_HASHER)
    cookie = first.issue_session(first.authenticate("ada", PASSWORD))
    clock.now += 1500
    cookie = first.refresh_session(cookie)
    clock.now += 1500
    restarted = Auth(make_settings(tmp_path), clock=clock, hasher=FAST_HASHER)
    assert restarted.verify_session(cookie) is not None


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


def test_signing_out_is_remembered_across_a_restart_and_other_sessions_stay(
    tmp_path: Path, clock: Clock
) -> None:
    first = Auth(make_settings(tmp_path), clock=clock, hasher=FAST_HASHER)
    signed_out = first.issue_session(first.authenticate("ada", PASSWORD))
    still_in = first.issue_session(first.authenticate("ada", PASSWORD))
    first.revoke_session(signed_out)

    restarted = Auth(make_settings(tmp_path), clock=clock, hasher=FAST_HASHER)  # same SECRET_KEY

    assert restarted.verify_session(signed_out) is None
    assert restarted.verify_session(still_in).username == "ada"
    revoked = tmp_path / REVOKED_FILE
    assert stat.S_IMODE(revoked.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # replaced whole


def test_the_revoked_list_drops_sessions_that_would_have_expired_anyway(
    tmp_path: Path, auth: Auth, clock: Clock
) -> None:
    old = auth.issue_session(auth.authenticate("ada", PASSWORD))
    auth.revoke_session(old)
    clock.now += 1800
    recent = auth.issue_session(auth.authenticate("ada", PASSWORD))
    auth.revoke_session(recent)
    assert len(json.loads((tmp_path / REVOKED_FILE).read_text())["revoked"]) == 2

    clock.now += 1801  # the first cookie is past its 3600 s maximum age
    newest = auth.issue_session(auth.authenticate("ada", PASSWORD))
    auth.revoke_session(newest)

    assert len(json.loads((tmp_path / REVOKED_FILE).read_text())["revoked"]) == 2


def test_an_unreadable_revoked_list_signs_earlier_sessions_out_rather_than_honour_them(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    first = Auth(make_settings(tmp_path), clock=clock, hasher=FAST_HASHER)
    cookie = first.issue_session(first.authenticate("ada", PASSWORD))
    (tmp_path / REVOKED_FILE).write_text("{not json")
    clock.now += 5

    with caplog.at_level(logging.ERROR, logger="web.auth"):
        restarted = Auth(make_settings(tmp_path), clock=clock, hasher=FAST_HASHER)

    assert restarted.verify_session(cookie) is None
    assert restarted.verify_session(restarted.issue_session(restarted.authenticate("ada", PASSWORD)))
    assert any("revoked-sessions file cannot be read" in r.getMessage() for r in caplog.records)


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


def test_a_patient_token_has_no_fixed_expiry_to_cut_a_long_session(auth: Auth, clock: Clock) -> None:
    token = auth.issue_patient_token("room-a")
    clock.now += 601  # past what used to be the token's lifetime (patient_token_ttl_s)
    assert auth.verify_patient_token(token, "room-a")
    clock.now += 3 * 3600
    assert auth.verify_patient_token(token, "room-a")  # the routes end it with the session instead


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


def test_repeated_wrong_passwords_lock_that_username_from_that_address_for_a_minute(
    auth: Auth, clock: Clock
) -> None:
    for attempt in range(5):
        assert auth.authenticate("ada", f"guess number {attempt}", address="203.0.113.7") is None

    with pytest.raises(LoginRateLimited) as limited:
        auth.authenticate("ada", PASSWORD, address="203.0.113.7")
    assert 0 < limited.value.retry_after_s <= 60

    clock.now += 61
    assert auth.authenticate("ada", PASSWORD, address="203.0.113.7") is not None


def test_an_attacker_failing_a_username_does_not_lock_out_the_real_clinician(
    auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="web.auth"):
        for attacker in range(10):  # ten addresses, each up to its own limit on "ada"
            for attempt in range(5):
                assert auth.authenticate("ada", f"guess {attempt}", address=f"203.0.113.{attacker}") is None
            with pytest.raises(LoginRateLimited):
                auth.authenticate("ada", "one more guess", address=f"203.0.113.{attacker}")

    clinician = auth.authenticate("ada", PASSWORD, address="198.51.100.1")  # Ada, at her desk

    assert clinician is not None and clinician.username == "ada"
    assert any("failed to sign in" in r.getMessage() for r in caplog.records)  # the operator is told
    assert not any("ada" in r.getMessage() for r in caplog.records)


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


def test_a_csrf_token_with_characters_outside_ascii_is_refused_not_an_error(auth: Auth) -> None:
    clinician = auth.verify_session(auth.issue_session(auth.authenticate("ada", PASSWORD)))
    assert clinician is not None
    assert auth.check_csrf(clinician, "\x80") is False  # a hostile header: refused (403), never a 500
    assert auth.check_csrf(clinician, clinician.csrf_token) is True
