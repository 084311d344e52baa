"""A real coturn (Debian's ``turnserver``) on 127.0.0.1 for the TURN tests, stopped afterwards.

It checks credentials the way a clinic's relay would (``use-auth-secret``: the TURN REST API's
shared secret) and relays only on loopback. Without ``turnserver`` the tests are skipped on a
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

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    """The server answers a STUN binding request on its UDP port."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(bytes(request), ("127.0.0.1", port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


@contextlib.contextmanager
def coturn(workdir: Path, secret: str = SECRET) -> Iterator[Coturn]:
    """Start ``turnserver`` on a free loopback port; stop it on the way out."""
    binary = debian_tool("turnserver", "coturn")
    for _ in range(3):  # another process may take the free port before turnserver binds it
        port = _free_udp_port()
        args = [
            binary,
            "-n",  # no configuration file: only these flags
            "--listening-ip=127.0.0.1",
            f"--listening-port={port}",
            "--relay-ip=127.0.0.1",
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
        ]
        log = (workdir / f"turnserver-{port}.log").open("wb")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        deadline = time.monotonic() + START_S
        while process.poll() is None and time.monotonic() < deadline and not _answers(port):
            time.sleep(0.05)
        if process.poll() is None and _answers(port):
            break
        process.kill()
        process.wait(timeout=5)
        log.close()
    else:
        pytest.fail("turnserver did not start on loopback")
    try:
        yield Coturn(port=port, secret=secret)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
