"""A flow: where a SIP message came from, and how to send back along the same way."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(eq=False)
class Flow:
    protocol: str  # "udp" | "tcp"
    remote: tuple[str, int]
    _udp: asyncio.DatagramTransport | None = None
    _writer: asyncio.StreamWriter | None = None

    @property
    def reliable(self) -> bool:
        return self.protocol == "tcp"

    @property
    def open(self) -> bool:
        if self._writer is not None:
            return not self._writer.is_closing()
        return self._udp is not None and not self._udp.is_closing()

    def send(self, data: bytes) -> None:
        """Send one message (dropped quietly if the way back has closed)."""
        if not self.open:
            return
        if self._writer is not None:
            self._writer.write(data)
        elif self._udp is not None:
            self._udp.sendto(data, self.remote)
