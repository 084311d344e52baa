"""The accounts command: python -m web.accounts add / list / remove / hash."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from configs.settings import REPO_ROOT, ClinicianAccount, Settings, load_settings
from web.accounts import main
from web.auth import Auth

PASSWORD = "a long enough password"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        escalations_dir=tmp_path / "escalations",
        secret_key="a test key that is long enough to sign things",
        clinician={
            "accounts_file": tmp_path / "var" / "clinicians.json",
            "audit_log": tmp_path / "audit.log",
        },
    )


def run(settings: Settings, *argv: str, stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), settings=settings, stdin=io.StringIO(stdin), stdout=out)
    return code, out.getvalue()


def test_add_list_and_remove_an_account(settings: Settings) -> None:
    added = run(settings, "add", "ada", "Dr Ada Lovelace", "--password-stdin", stdin=PASSWORD + "\n")
    listed = run(settings, "list")
    path = settings.path(settings.clinician.accounts_file)

    assert added[0] == 0 and "added ada (Dr Ada Lovelace)" in added[1]
    assert listed == (0, f"ada\tDr Ada Lovelace\t{path}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD not in path.read_text() and "$argon2id$" in path.read_text()
    assert Auth(settings).authenticate("ada", PASSWORD).display_name == "Dr Ada Lovelace"

    removed = run(settings, "remove", "ada")
    assert removed[0] == 0 and run(settings, "list")[1].startswith("no accounts")
    assert Auth(settings).authenticate("ada", PASSWORD) is None


def test_a_short_password_a_duplicate_or_a_bad_username_is_refused(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(settings, "add", "ada", "Dr Ada", "--password-stdin", stdin="short\n")[0] == 1
    assert "at least 12 characters" in capsys.readouterr().err
    assert run(settings, "add", "Ada Lovelace", "Dr Ada", "--password-stdin", stdin=PASSWORD)[0] == 1
    assert "username" in capsys.readouterr().err
    assert run(settings, "add", "ada", "Dr Ada", "--password-stdin", stdin=PASSWORD)[0] == 0
    assert run(settings, "add", "ada", "Dr Other", "--password-stdin", stdin=PASSWORD)[0] == 1
    assert "already exists" in capsys.readouterr().err
    assert run(settings, "remove", "grace")[0] == 1
    assert "no account grace" in capsys.readouterr().err
    assert run(settings, "list")[1].count("\n") == 1


def test_the_password_prompt_asks_twice_and_refuses_a_mismatch(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert run(settings, "add", "ada", "Dr Ada")[0] == 1
    assert "passwords differ" in capsys.readouterr().err
    assert not settings.path(settings.clinician.accounts_file).exists()


def test_hash_prints_a_hash_for_the_settings(settings: Settings) -> None:
    code, printed = run(settings, "hash", "--password-stdin", stdin=PASSWORD)
    configured = settings.model_copy(
        update={
            "clinician": settings.clinician.model_copy(
                update={
                    "accounts": [
                        ClinicianAccount(
                            username="grace", display_name="Dr Grace Hopper", password_hash=printed.strip()
                        )
                    ]
                }
            )
        }
    )
    assert code == 0 and printed.startswith("$argon2id$")
    assert Auth(configured).authenticate("grace", PASSWORD) is not None
    assert "grace\tDr Grace Hopper\tsettings" in run(configured, "list")[1]


def test_the_command_runs_as_a_module_with_the_password_on_stdin(tmp_path: Path) -> None:
    accounts_file = tmp_path / "clinicians.json"
    env = {**os.environ, "APP_ENV": "development", "CLINICIAN__ACCOUNTS_FILE": str(accounts_file)}
    command = [sys.executable, "-m", "web.accounts"]

    added = subprocess.run(
        [*command, "add", "grace", "Dr Grace Hopper", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    listed = subprocess.run(
        [*command, "list"], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120
    )

    assert added.returncode == 0, added.stderr
    assert f"grace\tDr Grace Hopper\t{accounts_file}" in listed.stdout
    assert stat.S_IMODE(accounts_file.stat().st_mode) == 0o600
