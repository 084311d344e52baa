"""SIP transactions (RFC 3261 section 17) and timers: retransmissions, absorbing duplicates.

Server side: a retransmitted request gets the last response again; a non-2xx final response
to an INVITE is retransmitted over UDP (Timer G: T1 doubling up to T2) until its ACK (Timer H:
give up after 64*T1). A transaction is remembered for 64*T1 after its final response (RFC 6026
for INVITE). The 2xx to an INVITE is retransmitted by the call itself until the ACK, with the
same ``Retransmitter``. Client side (our BYE): Timer E retransmissions, Timer F timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from media.sip.flow import Flow
from media.sip.headers import MAGIC_COOKIE, NameAddr, Via
from media.sip.message import SipMessage

MAX_SERVER_TRANSACTIONS = 4096


@dataclass(frozen=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J and the 2xx give-up."""
        return 64 * self.t1


class Retransmitter:
    """Sends now, again after T1, 2*T1, 4*T1 ... (at most T2 apart) until stopped; after 64*T1
    calls ``on_timeout``. With ``repeat=False`` (reliable transports) it only sends once."""

    def __init__(
        self,
        send: Callable[[], None],
        timers: Timers,
        *,
        on_timeout: Callable[[], None] | None = None,
        repeat: bool = True,
        initial: bool = True,
    ) -> None:
        self._send = send
        self._initial = initial
        self._timers = timers
        self._on_timeout = on_timeout
        self._repeat = repeat
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        if self._initial:
            self._send()
        interval = self._timers.t1
        deadline = time.monotonic() + self._timers.timeout
        while True:
            wait = min(interval, deadline - time.monotonic()) if self._repeat else deadline - time.monotonic()
            await asyncio.sleep(max(0.0, wait))
            if time.monotonic() >= deadline - 1e-3:
                if self._on_timeout is not None:
                    self._on_timeout()
                return
            self._send()
            interval = min(interval * 2, self._timers.t2)


def transaction_key(request: SipMessage) -> tuple[str, str, str]:
    """(branch, sent-by, method); an ACK is keyed as the INVITE it acknowledges."""
    via = Via.parse(request.get_all("via")[0])
    method = "INVITE" if request.method == "ACK" else str(request.method)
    branch = via.branch
    if branch is None or not branch.startswith(MAGIC_COOKIE):  # RFC 2543 peers: no unique branch
        number, _ = request.cseq
        from_tag = NameAddr.parse(request.get("from") or "").tag or ""
        branch = f"{request.get('call-id')}|{from_tag}|{number}"
    return branch, via.sent_by.lower(), method


@dataclass(eq=False)
class ServerTransaction:
    key: tuple[str, str, str]
    request: SipMessage
    flow: Flow
    last_response: bytes | None = None
    final_status: int | None = None
    retransmitter: Retransmitter | None = None
    on_cancel: Callable[[], None] | None = None  # INVITE: the call's CANCEL handler
    to_tag: str | None = None  # our tag in the responses (the call's, for an INVITE)
    created: float = field(default_factory=time.monotonic)

    @property
    def completed(self) -> bool:
        return self.final_status is not None


class ServerTransactions:
    def __init__(self, timers: Timers) -> None:
        self._timers = timers
        self._entries: dict[tuple[str, str, str], ServerTransaction] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, key: tuple[str, str, str]) -> ServerTransaction | None:
        return self._entries.get(key)

    def create(self, request: SipMessage, flow: Flow, key: tuple[str, str, str]) -> ServerTransaction:
        transaction = ServerTransaction(key, request, flow)
        self._entries[key] = transaction
        while len(self._entries) > MAX_SERVER_TRANSACTIONS:
            self._forget(next(iter(self._entries)))
        return transaction

    def respond(self, transaction: ServerTransaction, response: SipMessage) -> None:
        data = response.to_bytes()
        transaction.last_response = data
        status = int(response.status or 0)
        if status < 200:
            transaction.flow.send(data)
            return
        if transaction.completed:
            return
        transaction.final_status = status
        invite = transaction.request.method == "INVITE"
        if invite and status >= 300 and not transaction.flow.reliable:
            transaction.retransmitter = Retransmitter(
                lambda: transaction.flow.send(data), self._timers,
                on_timeout=lambda: self._forget(transaction.key),
            )  # fmt: skip
            transaction.retransmitter.start()
        else:
            transaction.flow.send(data)
        asyncio.get_running_loop().call_later(
            self._timers.timeout, self._forget, transaction.key, transaction
        )

    def retransmitted(self, key: tuple[str, str, str]) -> bool:
        """A request we have seen: send the last response again (if any). True if absorbed."""
        transaction = self._entries.get(key)
        if transaction is None:
            return False
        if transaction.last_response is not None:
            transaction.flow.send(transaction.last_response)
        return True

    def acknowledge(self, ack: SipMessage) -> bool:
        """The ACK of a non-2xx final response: stop retransmitting it (Timer I). True if matched."""
        transaction = self._entries.get(transaction_key(ack))
        if transaction is None or transaction.final_status is None or transaction.final_status < 300:
            return False
        if transaction.retransmitter is not None:
            transaction.retransmitter.stop()
        return True

    def _forget(self, key: tuple[str, str, str], only: ServerTransaction | None = None) -> None:
        transaction = self._entries.get(key)
        if transaction is None or (only is not None and transaction is not only):
            return
        del self._entries[key]
        if transaction.retransmitter is not None:
            transaction.retransmitter.stop()

    def close(self) -> None:
        for key in list(self._entries):
            self._forget(key)


class ClientTransactions:
    """Our own requests (BYE): retransmitted over UDP until a final response or 64*T1."""

    def __init__(self, timers: Timers) -> None:
        self._timers = timers
        self._pending: dict[tuple[str, str], asyncio.Future[SipMessage]] = {}

    async def request(self, request: SipMessage, flow: Flow) -> SipMessage | None:
        """Send ``request``; the final response, or None after 64*T1."""
        branch = Via.parse(request.get_all("via")[0]).branch or ""
        key = (branch, str(request.method))
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        data = request.to_bytes()
        sender = Retransmitter(lambda: flow.send(data), self._timers, repeat=not flow.reliable)
        sender.start()
        try:
            return await asyncio.wait_for(future, timeout=self._timers.timeout)
        except TimeoutError:
            return None
        finally:
            sender.stop()
            self._pending.pop(key, None)

    def response(self, response: SipMessage) -> bool:
        """A response to one of our requests; True if it matched."""
        try:
            branch = Via.parse(response.get_all("via")[0]).branch or ""
            _, method = response.cseq
        except (ValueError, IndexError):
            return False
        future = self._pending.get((branch, method))
        if future is None:
            return False
        if int(response.status or 0) >= 200 and not future.done():
            future.set_result(response)
        return True

    def close(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        with contextlib.suppress(Exception):
            self._pending.clear()
