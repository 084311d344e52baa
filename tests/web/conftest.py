"""Fixtures for the web tests: a real ``redis-server`` of the test's own, on loopback.

The shared state's tests (the queue across replicas, ``tests/web/test_queue_shared.py``) run
against Debian's redis-server, started here and stopped afterwards, never a mock. Without
redis-server they are skipped on a workstation and fail in CI (``CI=true``): scripts/test.sh
installs it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.debian_tools import debian_tool


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server on 127.0.0.1, nothing saved to disk; ``stop`` and ``start`` again on the
    same port (a Redis that goes away mid-way and comes back empty)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (on a free port the first time, on the same port after ``stop``)."""
        for _ in range(3):  # another process may take a free port before redis-server binds it
            port = self.port or _free_port()
            args = [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            process = subprocess.Popen(
                [*args, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 10
            while process.poll() is None and time.monotonic() < deadline and not _answers(port):
                time.sleep(0.05)
            if process.poll() is None and _answers(port):
                self.port, self.process = port, process
                return
            process.kill()
            process.wait(timeout=5)
        pytest.fail("redis-server did not start on loopback")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


def _redis_binary() -> str:
    return debian_tool("redis-server", "redis-server")


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the whole module (tests keep apart by key namespace)."""
    server = RedisServer(_redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test alone: the test may stop it and start it again."""
    server = RedisServer(_redis_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
