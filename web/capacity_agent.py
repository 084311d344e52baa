"""HAProxy's agent check: this replica tells the load balancer how many of its lines are free.

HAProxy's ``/health`` check says whether a replica is alive, not whether it can take a patient:
a replica whose every line is taken (``SESSIONS__MAX_CONCURRENT``, phone calls included) would
still be sent new offers and answer each with "all lines are busy" while another replica has
lines free. So each replica answers HAProxy's ``agent-check`` (a TCP connection to
``SESSIONS__AGENT_CHECK_PORT``; 0, the default, opens nothing) with one line of HAProxy's agent
protocol, from the same count the admission cap uses (``SessionHost.in_use``):

- lines free: ``ready N%``: N is the free fraction of the cap (at least 1%), which HAProxy applies
  to the server's configured weight, so new offers lean to the replica with more lines free;
  ``ready`` cancels an earlier ``drain`` (only the agent may undo what the agent did);
- every line taken: ``drain``: no new offers; requests that persistence sends to this replica
  (its sessions' renegotiation and room endpoints, a clinician joining) still reach it.

The reply never says ``up`` or ``down``: whether a replica is alive stays the health check's word.
A failed agent connection is not an error to HAProxy (it keeps the last weight), so a replica
that stops simply stops answering. ``configs/haproxy/haproxy.cfg`` is the other half.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
WRITE_TIMEOUT_S = 2.0  # HAProxy reads one line and closes; a peer that does not read is dropped


@dataclass(frozen=True)
class Lines:
    """This replica's admission count at one moment: lines taken and the cap."""

    in_use: int
    limit: int

    @property
    def free(self) -> int:
        return max(0, self.limit - self.in_use)


def agent_reply(lines: Lines) -> str:
    """The agent-protocol line for ``lines`` (``ready N%`` or ``drain``), newline-terminated."""
    if lines.limit <= 0 or lines.free == 0:
        return "drain\n"
    percent = max(1, (100 * lines.free) // lines.limit)
    return f"ready {percent}%\n"


class CapacityAgent:
    """A small asyncio TCP server that answers every connection with ``agent_reply`` and closes."""

    def __init__(self, host: str, port: int, lines: Callable[[], Lines]) -> None:
        self._host = host
        self._port = port
        self._lines = lines
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one asked for; the kernel's choice when that was 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._answer, self._host, self._port)
        log.info("capacity agent for HAProxy on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), WRITE_TIMEOUT_S)
        self._server = None

    async def _answer(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # HAProxy may send an ``agent-send`` string first; the reply does not depend on it.
        try:
            writer.write(agent_reply(self._lines()).encode("ascii"))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        except (OSError, TimeoutError):
            pass  # HAProxy gave up on this check: it keeps the last weight and asks again
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT_S)
