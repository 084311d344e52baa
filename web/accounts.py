"""Clinician accounts: the accounts file and the command that manages it.

    python -m web.accounts add USERNAME "Display Name" [--password-stdin]
    python -m web.accounts list
    python -m web.accounts remove USERNAME
    python -m web.accounts hash [--password-stdin]    # a hash for settings.clinician.accounts

The file is ``settings.clinician.accounts_file``: a JSON list of
``{username, display_name, password_hash}`` (argon2), written atomically with mode 0600.
Passwords are read from a prompt (twice) or, with ``--password-stdin``, from one line of stdin.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import TextIO

from argon2 import PasswordHasher

from configs.settings import ClinicianAccount, ConfigError, Settings, load_settings

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD_LENGTH = 12


class AccountError(ValueError):
    """A command cannot be done; the message says why, in one line."""


def read_accounts_file(path: Path) -> list[ClinicianAccount]:
    """The accounts in ``path`` (none when it does not exist)."""
    if not path.exists():
        return []
    data = json.loads(path.read_text() or "[]")
    if not isinstance(data, list):
        raise AccountError(f"{path} must hold a JSON list of accounts")
    return [ClinicianAccount.model_validate(item) for item in data]


def write_accounts_file(path: Path, accounts: list[ClinicianAccount]) -> None:
    """Replace ``path`` atomically with ``accounts``, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump([a.model_dump() for a in accounts], handle, indent=2)
        handle.write("\n")
    os.chmod(partial, 0o600)
    os.replace(partial, path)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


def add_account(path: Path, username: str, display_name: str, password: str) -> ClinicianAccount:
    """Add an account to the file; a username can be added once."""
    if not USERNAME_PATTERN.match(username):
        raise AccountError("a username is 1-64 lower-case letters, digits, '.', '_' or '-'")
    if not display_name.strip():
        raise AccountError("the display name is empty")
    check_password(password)
    accounts = read_accounts_file(path)
    if any(a.username == username for a in accounts):
        raise AccountError(f"{username} already exists: remove it first to change it")
    account = ClinicianAccount(
        username=username, display_name=display_name.strip(), password_hash=PasswordHasher().hash(password)
    )
    write_accounts_file(path, [*accounts, account])
    return account


def remove_account(path: Path, username: str) -> None:
    accounts = read_accounts_file(path)
    kept = [a for a in accounts if a.username != username]
    if len(kept) == len(accounts):
        raise AccountError(f"no account {username} in {path}")
    write_accounts_file(path, kept)


def _read_password(from_stdin: bool, stdin: TextIO) -> str:
    if from_stdin:
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise AccountError("the passwords differ")
    return first


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m web.accounts", description="Manage clinician accounts.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add an account (password from a prompt or stdin)")
    add.add_argument("username")
    add.add_argument("display_name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    commands.add_parser("list", help="list the accounts (no hashes)")
    remove = commands.add_parser("remove", help="remove an account")
    remove.add_argument("username")
    hash_ = commands.add_parser("hash", help="print an argon2 hash for settings.clinician.accounts")
    hash_.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    return parser


def main(
    argv: list[str] | None = None,
    *,
    settings: Settings | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run the command; 0 on success, 1 when it cannot be done, 2 on a configuration error."""
    args = _parser().parse_args(argv)
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        settings = settings or load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    path = settings.path(settings.clinician.accounts_file)
    try:
        if args.command == "add":
            password = _read_password(args.password_stdin, stdin)
            account = add_account(path, args.username, args.display_name, password)
            print(f"added {account.username} ({account.display_name}) to {path}", file=stdout)
        elif args.command == "list":
            from_settings = [(a, "settings") for a in settings.clinician.accounts]
            from_file = [(a, str(path)) for a in read_accounts_file(path)]
            if not from_settings and not from_file:
                print(f"no accounts (file: {path})", file=stdout)
            for account, where in from_settings + from_file:
                print(f"{account.username}\t{account.display_name}\t{where}", file=stdout)
        elif args.command == "remove":
            remove_account(path, args.username)
            print(f"removed {args.username} from {path}", file=stdout)
        else:
            password = _read_password(args.password_stdin, stdin)
            check_password(password)
            print(PasswordHasher().hash(password), file=stdout)
    except (AccountError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
