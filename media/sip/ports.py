"""The RTP port range: an even port for RTP and the odd one above it for RTCP, per call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class NoPortsError(RuntimeError):
    """Every port pair of the range is taken."""


class PortPool:
    def __init__(self, low: int, high: int) -> None:
        first = low + (low % 2)
        self._pairs = list(range(first, high, 2))  # RTP port p, RTCP p + 1 (both <= high)
        if not self._pairs:
            raise ValueError("the RTP port range holds no even/odd pair")
        self._next = 0
        self.in_use: set[int] = set()

    async def bind(
        self, host: str, factory: Callable[[], asyncio.DatagramProtocol]
    ) -> tuple[int, asyncio.DatagramTransport, asyncio.DatagramTransport]:
        """Bind the next free pair (ports other programs hold are skipped): (port, rtp, rtcp)."""
        loop = asyncio.get_running_loop()
        for _ in range(len(self._pairs)):
            port = self._pairs[self._next]
            self._next = (self._next + 1) % len(self._pairs)
            if port in self.in_use:
                continue
            try:
                rtp, _ = await loop.create_datagram_endpoint(factory, local_addr=(host, port))
            except OSError:
                continue
            try:
                rtcp, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=(host, port + 1)
                )
            except OSError:
                rtp.close()
                continue
            self.in_use.add(port)
            return port, rtp, rtcp  # type: ignore[return-value]
        raise NoPortsError("no free RTP port pair")

    def release(self, port: int) -> None:
        self.in_use.discard(port)
