"""The RTP port range: an even port for RTP and the odd one above it for RTCP, per call.

Each call gets a pair drawn at random (``secrets.SystemRandom``) from the free pairs of the
range, so the port of the next call cannot be guessed from the last one; two calls never share
a pair.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

_RANDOM = secrets.SystemRandom()


class NoPortsError(RuntimeError):
    """Every port pair of the range is taken."""


class PortPool:
    def __init__(self, low: int, high: int) -> None:
        first = low + (low % 2)
        self._pairs = list(range(first, high, 2))  # RTP port p, RTCP p + 1 (both <= high)
        if not self._pairs:
            raise ValueError("the RTP port range holds no even/odd pair")
        self.in_use: set[int] = set()

    async def bind(
        self, host: str, factory: Callable[[], asyncio.DatagramProtocol]
    ) -> tuple[int, asyncio.DatagramTransport, asyncio.DatagramTransport]:
        """Bind a random free pair (ports other programs hold are skipped): (port, rtp, rtcp)."""
        loop = asyncio.get_running_loop()
        candidates = [port for port in self._pairs if port not in self.in_use]
        _RANDOM.shuffle(candidates)
        for port in candidates:
            if port in self.in_use:  # taken by a call set up while we awaited
                continue
            self.in_use.add(port)  # reserved before the first await: no other call can pick it
            try:
                rtp, _ = await loop.create_datagram_endpoint(factory, local_addr=(host, port))
            except OSError:
                self.in_use.discard(port)
                continue
            try:
                rtcp, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=(host, port + 1)
                )
            except OSError:
                rtp.close()
                self.in_use.discard(port)
                continue
            return port, rtp, rtcp  # type: ignore[return-value]
        raise NoPortsError("no free RTP port pair")

    def release(self, port: int) -> None:
        self.in_use.discard(port)
