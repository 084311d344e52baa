"""Debian's HAProxy on loopback, running ``configs/haproxy/haproxy.cfg`` in front of local replicas.

The deployment's config is the one source of truth: ``loopback_config`` changes only where it
listens and where the replicas are (their compose names become 127.0.0.1 ports, the agent port
each replica's own) and adds an admin socket to read the servers' states from. Every routing
rule (balancing, agent check, stick table, cookie, backups) is the file's own. Used by
``tests/web/test_haproxy.py`` and ``python -m tools capacity --through-haproxy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HAPROXY_CFG = Path(__file__).resolve().parents[1] / "configs" / "haproxy" / "haproxy.cfg"
BACKEND = "replicas"
START_S = 30.0


@dataclass(frozen=True)
class Replica:
    """Where one replica listens on loopback: its HTTP port and its agent-check port."""

    name: str  # the compose service name in the config (app-1, app-2)
    port: int
    agent_port: int


def _sub(pattern: str, replacement: str, text: str, count: int) -> str:
    """``re.sub`` that insists on ``count`` matches: a config that drifted fails loudly here."""
    result, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if found != count:
        raise ValueError(f"haproxy.cfg: expected {count} match(es) of {pattern!r}, found {found}")
    return result


def loopback_config(
    text: str, port: int, replicas: list[Replica], admin_socket: Path, health_port: int
) -> str:
    """``text`` (haproxy.cfg) listening on 127.0.0.1:``port`` in front of ``replicas``."""
    text = _sub(r"^(\s*)bind :8000$", rf"\g<1>bind 127.0.0.1:{port}", text, 1)
    text = _sub(r"^(\s*)bind 127\.0\.0\.1:8404$", rf"\g<1>bind 127.0.0.1:{health_port}", text, 1)
    text = _sub(r"^global$", f"global\n    stats socket {admin_socket} level admin", text, 1)
    for replica in replicas:
        name = re.escape(replica.name)
        # The active server (with its agent) and its backup twin: the same replica.
        text = _sub(rf"(\s){name}:8000(\s)", rf"\g<1>127.0.0.1:{replica.port}\g<2>", text, 2)
        text = _sub(
            rf"^(\s*server {name} .*)agent-port 8001", rf"\g<1>agent-port {replica.agent_port}", text, 1
        )
    return text


class HAProxy:
    """One haproxy process (foreground) and its admin socket; ``stop`` ends it."""

    def __init__(
        self, binary: str, folder: Path, port: int, replicas: list[Replica], health_port: int
    ) -> None:
        self.port = port
        self.socket = folder / "haproxy.sock"
        self.config = folder / "haproxy.cfg"
        self.log = folder / "haproxy.log"
        self.config.write_text(
            loopback_config(HAPROXY_CFG.read_text(), port, replicas, self.socket, health_port)
        )
        self._binary = binary
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [self._binary, "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        self._process = None

    async def _command(self, line: str) -> str:
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.read(), 5)).decode()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def states(self) -> dict[str, str]:
        """Each server of the replicas backend and its status as the stats show it (UP, DRAIN, DOWN...)."""
        text = (await self._command("show stat")).lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    async def wait_for(self, wanted: dict[str, str], within_s: float = START_S) -> None:
        """Until each named server shows its wanted status (the status word's start: "UP", "DRAIN")."""
        deadline = time.monotonic() + within_s
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log.read_text(errors='replace')[-800:]}")
            with contextlib.suppress(OSError, TimeoutError):
                states = await self.states()
                if all(states.get(name, "").startswith(status) for name, status in wanted.items()):
                    return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"haproxy's servers are {states}, not {wanted}, after {within_s:.0f} s")
