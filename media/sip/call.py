"""One phone call: answering it, the patient session behind it, hold, keypad, and tear-down.

The INVITE is answered once the session's pipeline is up (``100 Trying`` and ``180 Ringing``
first), so the greeting is not clipped and a CANCEL can still arrive; the ``200 OK`` is
retransmitted until the ACK (64*T1 without one: BYE). The call ends on the caller's BYE, on
our BYE (the session ended, RTP stopped for ``rtp_timeout_s``, the server stops), and always
the same way: session ended, RTP ports released, the call's line freed, the call forgotten. On the
caller's BYE the session is heard out first (``LiveSession.hang_up``: the words already received
are transcribed and assessed, so a red flag said as the caller hangs up is still escalated);
otherwise it is cancelled.

A call holds one of the host's lines (``SESSIONS__MAX_CONCURRENT``, shared with the browser) from
its admission on the INVITE until its session is live, then as that session.

Logs name a call by a hash of its dialog (Call-ID and both tags, ours random), never by a number,
URI or display name; that hash is also the patient session's id, so a new INVITE that reuses an
old call's Call-ID is a new session with its own room, never the old one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from agent.channel import Channel
from configs.settings import SipSettings
from media.host import Line, LiveSession, SessionHost, Transport
from media.sip.dialog import Dialog
from media.sip.dtmf import parse_info_digit
from media.sip.flow import Flow
from media.sip.g711 import SAMPLE_RATE as LINE_RATE
from media.sip.media import CallMedia
from media.sip.message import SipMessage, response_to
from media.sip.patient import PhonePatient
from media.sip.ports import NoPortsError, PortPool
from media.sip.sdp import (
    Negotiated,
    SdpError,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate,
    parse_sdp,
)
from media.sip.transaction import (
    ClientTransactions,
    Retransmitter,
    ServerTransaction,
    ServerTransactions,
    Timers,
)
from media.sip.transport import PIPELINE_RATE, SipCallTransport

log = logging.getLogger(__name__)
ANSWER_TIMEOUT_S = 30.0  # the session must be up by then, or the caller gets 503
SESSION_STOP_TIMEOUT_S = 5.0
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"


def call_tag(call_id: str, remote_tag: str = "", local_tag: str = "") -> str:
    """What logs call a call, and its session's id: a short hash of its dialog's identifiers."""
    dialog = "\x00".join((call_id, remote_tag, local_tag))
    return hashlib.sha256(dialog.encode(errors="replace")).hexdigest()[:16]


class CallState(Enum):
    RINGING = "ringing"
    ANSWERED = "answered"  # 200 OK sent, waiting for the ACK
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass
class CallServices:
    """What a call needs from its server."""

    settings: SipSettings
    host: SessionHost
    ports: PortPool
    timers: Timers
    transactions: ServerTransactions
    client: ClientTransactions
    address: str  # advertised in SDP
    contact: Callable[[Flow], str]
    via_sent_by: Callable[[Flow], str]
    forget: Callable[[Call], None]


class Call:
    def __init__(
        self,
        services: CallServices,
        invite: SipMessage,
        transaction: ServerTransaction,
        flow: Flow,
        offer: SessionDescription | None,
        negotiated: Negotiated | None,
        *,
        line: Line | None = None,
    ) -> None:
        self._services = services
        self._line = line  # the admission, until the session is live (released by the host, or here)
        self._heard_out = False  # the caller hung up: the session hears out their last words
        self.invite = invite
        self.local_tag = secrets.token_hex(6)
        self.dialog = Dialog.from_invite(invite, self.local_tag, flow, services.via_sent_by(flow))
        self.tag = call_tag(self.dialog.call_id, self.dialog.remote.tag or "", self.local_tag)
        self.state = CallState.RINGING
        self.media: CallMedia | None = None
        self.transport: SipCallTransport | None = None
        self._transaction = transaction
        transaction.to_tag = self.local_tag
        self._offer = offer
        self._negotiated = negotiated
        self._flow = flow
        self._cancelled = asyncio.Event()
        self._session: asyncio.Task | None = None
        self._live: LiveSession | None = None
        self._ok: Retransmitter | None = None  # the 2xx awaiting its ACK
        self._ok_cseq = 0
        self._late_offer = False
        self._watchdog: asyncio.Task | None = None
        self._ending: asyncio.Task | None = None
        self._teardown: asyncio.Task | None = None
        self._sdp_id = secrets.randbelow(2**31)
        self._sdp_version = 1
        self.end_reason = ""

    # --- answering ---------------------------------------------------------------------------

    def _reply(
        self,
        transaction: ServerTransaction,
        status: int,
        *,
        body: str = "",
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        response = response_to(transaction.request, status, to_tag=self.local_tag)
        if transaction.request.method == "INVITE" and 100 < status < 300:
            for route in transaction.request.get_all("record-route"):  # RFC 3261 12.1.1
                response.add("record-route", route)
            response.add("contact", self._services.contact(transaction.flow))
        response.add("allow", ALLOW)
        for name, value in extra:
            response.add(name, value)
        if body:
            response.add("content-type", "application/sdp")
            response.body = body.encode()
        self._services.transactions.respond(transaction, response)

    async def setup(self) -> None:
        """From 100 Trying to 200 OK (or an error); never raises."""
        try:
            await self._setup()
        except Exception:  # noqa: BLE001 - a broken call must not take the server down
            log.exception("call %s: setup failed", self.tag)
            if not self._transaction.completed:
                self._reply(self._transaction, 500)
            await self.end("setup failed")

    async def _setup(self) -> None:
        services = self._services
        negotiated = self._negotiated or _default_negotiation(self._flow)
        self._late_offer = self._offer is None
        try:
            self.media = await CallMedia.open(services.ports, services.settings.host, negotiated)
        except NoPortsError:
            log.warning("call %s: no free RTP port", self.tag)
            self._reply(self._transaction, 503, extra=[("retry-after", "5")])
            await self.end("no RTP port")
            return
        self._reply(self._transaction, 180)
        self.transport = SipCallTransport(self.media)
        self._session = asyncio.create_task(self._run_session(), name=f"sip-session-{self.tag}")
        ready = asyncio.create_task(self.transport.ready.wait())
        cancelled = asyncio.create_task(self._cancelled.wait())
        await asyncio.wait(
            {ready, cancelled, self._session}, timeout=ANSWER_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        cancelled.cancel()
        if self._cancelled.is_set():
            log.info("call %s: cancelled before answer", self.tag)
            self._reply(self._transaction, 487)
            await self.end("cancelled")
            return
        if not self.transport.ready.is_set():
            log.error("call %s: the session did not start", self.tag)
            self._reply(self._transaction, 503, extra=[("retry-after", "10")])
            await self.end("session did not start")
            return
        self._answer(self._transaction, self._sdp(negotiated))
        self.media.last_received = time.monotonic()
        self.transport.answered.set()
        self._watchdog = asyncio.create_task(self._watch_rtp(), name=f"sip-rtp-watch-{self.tag}")
        log.info("call %s: answered (%s)", self.tag, negotiated.codec.name)

    def _sdp(self, negotiated: Negotiated) -> str:
        assert self.media is not None
        self._sdp_version += 1
        common = dict(address=self._services.address, port=self.media.port, session_id=self._sdp_id,
                      version=self._sdp_version)  # fmt: skip
        if self._offer is None:
            return build_offer(**common)
        return build_answer(self._offer, negotiated, **common)

    def _answer(self, transaction: ServerTransaction, sdp: str) -> None:
        """Send the 2xx and retransmit it until the ACK."""
        self._reply(transaction, 200, body=sdp)
        self.state = CallState.ANSWERED if self.state == CallState.RINGING else self.state
        self._ok_cseq, _ = transaction.request.cseq
        data, flow = transaction.last_response or b"", transaction.flow
        if self._ok is not None:
            self._ok.stop()
        self._ok = Retransmitter(
            lambda: flow.send(data), self._services.timers,
            on_timeout=self._no_ack, repeat=not flow.reliable, initial=False,
        )  # fmt: skip
        self._ok.start()

    def _no_ack(self) -> None:
        log.warning("call %s: no ACK for the 200 OK", self.tag)
        self.hangup_soon("no ACK")

    def cancel(self) -> None:
        """CANCEL of the INVITE (the server has answered the CANCEL itself)."""
        self._cancelled.set()

    async def _run_session(self) -> None:
        assert self.transport is not None

        self._live = await self._services.host.start(
            self.transport,
            kind=Transport.SIP,
            channel=Channel.AUDIO,
            output_rate=PIPELINE_RATE,
            session_id=self.tag,
            patient=PhonePatient(self.transport),
            patient_rate=LINE_RATE,
            line=self._line,
        )
        await self._live.wait()
        if self.state in (CallState.ANSWERED, CallState.CONFIRMED):
            self.hangup_soon("session ended")

    # --- in the dialog -------------------------------------------------------------------------

    def on_ack(self, ack: SipMessage) -> None:
        number, _ = ack.cseq
        if self._ok is None or number != self._ok_cseq:
            return
        self._ok.stop()
        self._ok = None
        if self.state == CallState.ANSWERED:
            self.state = CallState.CONFIRMED
        if self._late_offer:
            self._late_offer = False
            if not self._apply_offer_from(ack):
                self.hangup_soon("no usable SDP in the ACK")

    def _apply_offer_from(self, message: SipMessage) -> bool:
        """The SDP of an ACK answering our offer; False if unusable."""
        try:
            negotiated = negotiate(parse_sdp(message.body.decode("utf-8", errors="replace")))
        except SdpError:
            return False
        if self.media is not None:
            self.media.update(negotiated)
        return True

    def on_reinvite(self, request: SipMessage, transaction: ServerTransaction) -> None:
        """Hold, resume, a new address or codec: answer with the matching direction."""
        if self.media is None or self.state not in (CallState.ANSWERED, CallState.CONFIRMED):
            self._reply(transaction, 491)
            return
        if self._ok is not None:  # our previous 2xx is still waiting for its ACK
            self._reply(transaction, 491)
            return
        if not request.body.strip():
            self._offer = None
            self._late_offer = True
            self._answer(transaction, self._sdp(self.media.negotiated))
            return
        try:
            offer = parse_sdp(request.body.decode("utf-8", errors="replace"))
            negotiated = negotiate(offer)
        except SdpError as error:
            self._reply(transaction, error.status)
            return
        was_held = self.media.held
        self._offer = offer
        self._late_offer = False
        self.media.update(negotiated)
        self.media.last_received = time.monotonic()
        if self.media.held != was_held:
            log.info("call %s: %s", self.tag, "on hold" if self.media.held else "resumed")
        self._answer(transaction, self._sdp(negotiated))

    def on_info(self, request: SipMessage, transaction: ServerTransaction) -> None:
        digit = parse_info_digit(request.get("content-type") or "", request.body)
        if digit is None:
            self._reply(transaction, 415, extra=[("accept", "application/dtmf-relay, application/dtmf")])
            return
        self._reply(transaction, 200)
        if self.transport is not None:
            self.transport.press(digit)

    def on_bye(self, transaction: ServerTransaction) -> None:
        self._reply(transaction, 200)
        log.info("call %s: the caller hung up", self.tag)
        self._heard_out = True
        self._end_soon("caller hung up")

    # --- ending ------------------------------------------------------------------------------

    async def _watch_rtp(self) -> None:
        limit = self._services.settings.rtp_timeout_s
        while self.media is not None and not self.media.closed:
            await asyncio.sleep(min(1.0, limit / 4))
            if self.media.negotiated.direction != "sendrecv":  # hold, or a one-way stream
                self.media.last_received = time.monotonic()
            elif time.monotonic() - self.media.last_received > limit:
                log.warning("call %s: no RTP for %.0f s, hanging up", self.tag, limit)
                self.hangup_soon("RTP timeout")
                return

    def hangup_soon(self, reason: str) -> None:
        if self._ending is None:
            self._ending = asyncio.create_task(self.hangup(reason), name=f"sip-hangup-{self.tag}")

    def _end_soon(self, reason: str) -> None:
        if self._ending is None:
            self._ending = asyncio.create_task(self.end(reason), name=f"sip-end-{self.tag}")

    async def hangup(self, reason: str) -> None:
        """Our BYE (or, before the answer, a 480 to the INVITE), then the tear-down."""
        if self.state == CallState.ENDED:
            return
        if self.state == CallState.RINGING:
            if not self._transaction.completed:
                self._reply(self._transaction, 480)
            await self.end(reason)
            return
        answered = self.state
        bye = self.dialog.request("BYE", [("reason", f'SIP;cause=200;text="{reason}"')])
        ending = asyncio.create_task(self.end(reason))
        if answered in (CallState.ANSWERED, CallState.CONFIRMED) and self._flow.open:
            response = await self._services.client.request(bye, self._flow)
            log.info("call %s: BYE sent (%s)", self.tag, response.status if response else "no answer")
        await ending

    async def end(self, reason: str) -> None:
        """Tear down: session cancelled, timers stopped, RTP ports released, call forgotten.

        Idempotent: every caller waits for the same tear-down.
        """
        if self._teardown is None:
            self.state = CallState.ENDED
            self.end_reason = reason
            self._teardown = asyncio.get_running_loop().create_task(self._tear_down())
        await asyncio.shield(self._teardown)

    async def _tear_down(self) -> None:
        if self._ok is not None:
            self._ok.stop()
        if self._watchdog is not None:
            self._watchdog.cancel()
        session = self._session
        if session is not None and not session.done():
            if self._live is None:
                session.cancel()  # its pipeline has not started yet
            elif self._heard_out:
                with contextlib.suppress(Exception):  # bounded: cancelled after media.host.HANG_UP_GRACE_S
                    await self._live.hang_up()
            else:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._live.cancel(), SESSION_STOP_TIMEOUT_S)
            await asyncio.wait({session}, timeout=SESSION_STOP_TIMEOUT_S)
            if not session.done():
                session.cancel()
        if self._line is not None:
            self._line.release()  # a call that never reached its session gives its line back
        if self.media is not None:
            self.media.close()
        self._services.forget(self)
        counters = self.media.counters if self.media is not None else None
        log.info("call %s: ended (%s); rtp %s", self.tag, self.end_reason, counters)


def _default_negotiation(flow: Flow) -> Negotiated:
    """Before an offerless INVITE's ACK: PCMU towards the signalling address (until RTP comes)."""
    from media.sip.g711 import PCMU

    return Negotiated(PCMU, 101, (flow.remote[0], 0), "sendrecv", 0)
