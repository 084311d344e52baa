"""A real coturn (Debian's ``turnserver``) on 127.0.0.1 for the TURN tests, stopped afterwards.

It checks credentials the way a clinic's relay would (``use-auth-secret``: the TURN REST API's
shared secret) and listens and relays on loopback, or on an address a test made in its own
network namespace. Without ``turnserver`` the tests are skipped on a
workstation and fail in CI (``CI=true``): scripts/test.sh installs coturn.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioice import stun

from tests.debian_tools import debian_tool

SECRET = "the-clinics-shared-turn-secret"
REALM = "test"
START_S = 10.0


@dataclass(frozen=True)
class Coturn:
    port: int
    secret: str
    host: str = "127.0.0.1"
    log: Path | None = None  # what turnserver wrote: its allocations, permissions and refusals

    @property
    def url(self) -> str:
        return f"turn:{self.host}:{self.port}?transport=udp"


def _free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _answers(port: int, host: str = "127.0.0.1") -> bool:
    """The server answers a STUN binding request on its UDP port."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(bytes(request), (host, port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


@contextlib.contextmanager
def coturn(
    workdir: Path, secret: str = SECRET, host: str = "127.0.0.1", verbose: bool = False
) -> Iterator[Coturn]:
    """Start ``turnserver`` on a free port of ``host``; stop it on the way out.

    ``host`` is loopback unless a test made itself another address in its own network namespace
    (a browser gathers no relay candidates from a TURN server on loopback: test_turn_browser.py).
    ``verbose`` logs every request turnserver processes (allocations, permissions, 401s).
    """
    binary = debian_tool("turnserver", "coturn")
    for _ in range(3):  # another process may take the free port before turnserver binds it
        port = _free_udp_port(host)
        args = [
            binary,
            "-n",  # no configuration file: only these flags
            f"--listening-ip={host}",
            f"--listening-port={port}",
            f"--relay-ip={host}",
            "--allow-loopback-peers",  # the peers of these tests are on 127.0.0.1 too
            "--use-auth-secret",
            f"--static-auth-secret={secret}",
            f"--realm={REALM}",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-tcp-relay",
            "--log-file=stdout",
            "--simple-log",
            f"--pidfile={workdir / 'turnserver.pid'}",
            f"--userdb={workdir / 'turndb'}",
            *(["--verbose"] if verbose else []),
        ]
        log_path = workdir / f"turnserver-{port}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        deadline = time.monotonic() + START_S
        while process.poll() is None and time.monotonic() < deadline and not _answers(port, host):
            time.sleep(0.05)
        if process.poll() is None and _answers(port, host):
            break
        process.kill()
        process.wait(timeout=5)
        log.close()
    else:
        pytest.fail(f"turnserver did not start on {host}")
    try:
        yield Coturn(port=port, secret=secret, host=host, log=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
