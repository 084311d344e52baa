"""The SIP bridge: a user agent server for trunks and PBXs, each call a patient session.

    server = SipServer(settings, host)   # settings.sip.*: address, port, transports, limits, auth
    await server.start() ... await server.stop()

It listens on UDP and/or TCP, answers INVITE (100, 180, 200 with SDP), ACK, BYE, CANCEL (487),
OPTIONS, INFO (keypad digits) and re-INVITE (hold/resume); refuses what it cannot serve with the
proper status (400, 401, 403, 405, 413, 415, 416, 420, 481, 482, 483, 486, 488, 501, 503, 505,
513); drops what cannot be answered (responses to nobody, junk). Responses go back where the
request came from (RFC 3581 ``received``/``rport``), which is also where our BYE goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import secrets
from collections import Counter

from configs.settings import Settings
from media.host import LinesBusy, SessionHost
from media.sip.auth import Authorizer, DigestAuth, PeerAllowList, Verdict
from media.sip.call import ALLOW, Call, CallServices, CallState
from media.sip.flow import Flow
from media.sip.headers import NameAddr, Via, uri_scheme
from media.sip.message import (
    MAX_MESSAGE_BYTES,
    SipMessage,
    SipParseError,
    StreamFramer,
    parse_message,
    response_to,
    split_list,
)
from media.sip.ports import PortPool
from media.sip.sdp import SdpError, negotiate, parse_sdp
from media.sip.transaction import (
    ClientTransactions,
    ServerTransaction,
    ServerTransactions,
    Timers,
    transaction_key,
)
from media.sip.transport import SipCallTransport
from pipeline.metrics import SIP_BRIDGE_UP

log = logging.getLogger(__name__)
SERVER_NAME = "patient-advocacy-agent"
KNOWN_UNSUPPORTED = {"REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "UPDATE", "PRACK"}
MAX_TCP_CONNECTIONS = 256
TCP_IDLE_S = 600.0
STOP_TIMEOUT_S = 3.0  # our BYE sent three times over UDP by then (T1 = 0.5 s)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: SipServer) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self._server.handle(data, Flow("udp", (addr[0], addr[1]), _udp=self.transport))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable and the like
        log.debug("udp error: %s", type(exc).__name__)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.listener_lost("udp", exc)


class SipServer:
    def __init__(self, settings: Settings, host: SessionHost, *, timers: Timers | None = None) -> None:
        sip = settings.sip
        self.settings = settings
        self.host = host
        self.timers = timers or Timers()
        self.calls: dict[str, Call] = {}  # by our dialog tag
        self.stats: Counter[str] = Counter()
        self.port = sip.port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self._tcp_per_address: Counter[str] = Counter()
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        self._transactions = ServerTransactions(self.timers)
        self._client = ClientTransactions(self.timers)
        self._ports = PortPool(sip.rtp_port_min, sip.rtp_port_max)
        password = sip.digest_password.get_secret_value() if sip.digest_password else None
        digest = (
            DigestAuth(sip.realm, sip.digest_username, password, allow_md5=sip.digest_allow_md5)
            if sip.digest_username and password
            else None
        )
        self._auth = Authorizer(PeerAllowList(sip.allowed_peers), digest)
        self.address = sip.public_address or sip.host
        if ipaddress.ip_address(self.address).is_unspecified:
            raise ValueError("settings.sip.public_address is needed when settings.sip.host is a wildcard")

    @property
    def active_calls(self) -> int:
        """Calls ringing or up."""
        return len(self.calls)

    @property
    def rtp_ports_in_use(self) -> set[int]:
        return set(self._ports.in_use)

    def transport_for(self, session_id: str) -> SipCallTransport | None:
        """The live call of a patient session (its id is the call's tag), for a clinician joining."""
        call = next((c for c in self.calls.values() if c.tag == session_id), None)
        return call.transport if call is not None and call.state != CallState.ENDED else None

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        sip = self.settings.sip
        loop = asyncio.get_running_loop()
        if "udp" in sip.transports:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(sip.host, self.port)
            )
            self.port = self._udp.get_extra_info("sockname")[1]
        if "tcp" in sip.transports:
            self._tcp = await asyncio.start_server(
                self._tcp_client, sip.host, self.port, limit=MAX_MESSAGE_BYTES
            )
            self.port = self._tcp.sockets[0].getsockname()[1]
        log.info("SIP bridge listening on %s:%d (%s)", sip.host, self.port, "+".join(sip.transports))
        SIP_BRIDGE_UP.labels(port=str(self.port)).set(1)

    def listener_lost(self, transport: str, exc: Exception | None) -> None:
        """A listener closed while the bridge was not stopping: callers get no answer on it."""
        if self._stopping:
            return
        log.error(
            "SIP bridge stopped listening on %s (%s)", transport, type(exc).__name__ if exc else "closed"
        )
        SIP_BRIDGE_UP.labels(port=str(self.port)).set(0)  # SipBridgeDown (configs/prometheus)

    async def stop(self) -> None:
        """Hang up every call (BYE), then close the listeners."""
        # A bridge stopped on purpose (the process shutting down) has nothing left to report: its
        # series goes, rather than reading 0 and paging someone for a deliberate stop.
        self._stopping = True
        with contextlib.suppress(KeyError):
            SIP_BRIDGE_UP.remove(str(self.port))
        calls = list(self.calls.values())
        if calls:
            hangups = [asyncio.create_task(call.hangup("server stopping")) for call in calls]
            _, late = await asyncio.wait(hangups, timeout=STOP_TIMEOUT_S)
            for task in late:  # a peer that does not answer our BYE
                task.cancel()
            for call in calls:
                await call.end("server stopping")
        for task in list(self._tasks):
            task.cancel()
        self._transactions.close()
        self._client.close()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._tcp_writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2.0)
        log.info("SIP bridge stopped")

    def _spawn(self, coroutine, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- network ---------------------------------------------------------------------------------

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        refusal = self._tcp_refusal(peer[0])
        if refusal is not None:  # before the connection takes a slot
            self.stats[refusal] += 1
            writer.close()
            return
        self._tcp_writers.add(writer)
        self._tcp_per_address[peer[0]] += 1
        flow = Flow("tcp", (peer[0], peer[1]), _writer=writer)
        framer = StreamFramer()
        try:
            while True:
                data = await asyncio.wait_for(reader.read(8192), TCP_IDLE_S)
                if not data:
                    break
                pings = framer.keepalives
                try:
                    messages = framer.feed(data)
                except SipParseError:
                    self.stats["tcp_unframeable"] += 1
                    break
                if framer.keepalives > pings:
                    writer.write(b"\r\n")
                for message in messages:
                    self.handle(message, flow)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._tcp_writers.discard(writer)
            self._tcp_per_address[peer[0]] -= 1
            if self._tcp_per_address[peer[0]] <= 0:
                del self._tcp_per_address[peer[0]]
            writer.close()

    def _tcp_refusal(self, address: str) -> str | None:
        """Why a new TCP connection from ``address`` is closed at once (a stats key), or None.

        A peer outside the allow-list gets no connection unless digest credentials could admit it;
        no address may hold more than ``tcp_connections_per_address``; nobody more than
        ``MAX_TCP_CONNECTIONS`` in all."""
        if not self._auth.allow.allows(address) and self._auth.digest is None:
            return "tcp_forbidden"
        if self._tcp_per_address[address] >= self.settings.sip.tcp_connections_per_address:
            return "tcp_per_address"
        if len(self._tcp_writers) >= MAX_TCP_CONNECTIONS:
            return "tcp_full"
        return None

    def handle(self, data: bytes, flow: Flow) -> None:
        """One message from the network; never raises."""
        if not data.strip(b"\r\n \t\x00"):
            return  # keep-alive
        try:
            message = parse_message(data)
        except SipParseError as error:
            self._reject(error, flow)
            return
        try:
            if message.is_request:
                self._request(message, flow)
            else:
                self._client.response(message)
        except Exception:  # noqa: BLE001 - hostile input must never take the server down
            self.stats["errors"] += 1
            log.exception("could not handle a %s", message.method or "response")
            if message.is_request and message.method != "ACK":
                with contextlib.suppress(Exception):
                    flow.send(self._response(message, 500).to_bytes())

    def _reject(self, error: SipParseError, flow: Flow) -> None:
        partial = error.partial
        if partial is None or not partial.is_request or partial.method == "ACK":
            self.stats["dropped"] += 1
            return
        if not _answerable(partial):
            self.stats["dropped"] += 1
            return
        self.stats["rejected"] += 1
        flow.send(self._response(partial, error.status, error.reason).to_bytes())

    def _response(
        self, request: SipMessage, status: int, reason: str | None = None, to_tag: str | None = None
    ) -> SipMessage:
        response = response_to(request, status, reason, to_tag=to_tag or secrets.token_hex(6))
        response.add("server", SERVER_NAME)
        return response

    # --- requests ----------------------------------------------------------------------------------

    def _request(self, message: SipMessage, flow: Flow) -> None:
        try:
            _stamp_via(message, flow)
            key = transaction_key(message)
            to = NameAddr.parse(message.get("to") or "")
            NameAddr.parse(message.get("from") or "")
            for contact in message.get_all("contact"):
                if contact != "*":
                    NameAddr.parse(contact)
        except ValueError:
            self._reject(SipParseError(400, "Bad Request (Via, From, To or Contact)", message), flow)
            return
        if message.method == "ACK":
            self._ack(message, to.tag)
            return
        if self._transactions.retransmitted(key):
            return
        refusal = self._refusal(message, key, flow, to.tag)
        if refusal is not None:  # answered without keeping anything: a flood costs us no memory
            status, extra = refusal
            self.stats["stateless"] += 1
            self._reply_stateless(message, key, flow, status, extra)
            return
        transaction = self._transactions.create(message, flow, key)
        method = str(message.method)
        if method == "CANCEL":
            self._cancel(transaction, key)
        elif to.tag:
            self._in_dialog(transaction, to.tag)
        else:
            self._out_of_dialog(transaction)

    def _refusal(
        self, request: SipMessage, key: tuple[str, str, str], flow: Flow, to_tag: str | None
    ) -> tuple[int, list[tuple[str, str]]] | None:
        """The answer to a request that gets no transaction (who may not, or cannot, be served)."""
        method = str(request.method)
        if method == "CANCEL":
            return (481, []) if self._transactions.find((key[0], key[1], "INVITE")) is None else None
        if request.get("max-forwards") == "0" and method != "OPTIONS":
            return 483, []
        if uri_scheme(str(request.uri)) not in ("sip", "sips", "tel"):
            return 416, []
        if to_tag:
            call = self.calls.get(to_tag)
            from_tag = NameAddr.parse(request.get("from") or "").tag
            if (
                call is None
                or call.dialog.call_id != request.get("call-id")
                or call.dialog.remote.tag != from_tag
            ):
                return 481, []
            same_peer = flow.remote[0] == call.dialog.flow.remote[0]
            if not same_peer and not self._auth.allow.allows(flow.remote[0]):
                return 403, []
            return None
        verdict = self._auth.check(flow.remote[0], method, str(request.uri), request.get("authorization"))
        if verdict == Verdict.FORBID:
            self.stats["forbidden"] += 1
            return 403, []
        if verdict != Verdict.ALLOW:
            assert self._auth.digest is not None
            self.stats["challenged"] += 1
            challenges = self._auth.digest.challenges(stale=verdict == "stale")
            return 401, [("www-authenticate", value) for value in challenges]
        return None

    def _reply_stateless(
        self,
        request: SipMessage,
        key: tuple[str, str, str],
        flow: Flow,
        status: int,
        extra: list[tuple[str, str]],
    ) -> None:
        """RFC 3261 8.2.7: a response sent once, nothing remembered (a retransmission is answered
        again the same way; the tag depends only on the transaction)."""
        tag = hashlib.sha256("|".join(key).encode()).hexdigest()[:12]
        response = self._response(request, status, to_tag=tag)
        for name, value in extra:
            response.add(name, value)
        flow.send(response.to_bytes())

    @property
    def stored_transactions(self) -> int:
        """Server transactions remembered now (bounded; only admitted requests make them)."""
        return len(self._transactions)

    def _reply(
        self, transaction: ServerTransaction, status: int, extra: list[tuple[str, str]] | None = None
    ) -> None:
        # Our tag: the call's for an INVITE; otherwise one that stays the same for the transaction.
        tag = transaction.to_tag or hashlib.sha256("|".join(transaction.key).encode()).hexdigest()[:12]
        response = self._response(transaction.request, status, to_tag=tag)
        for name, value in extra or []:
            response.add(name, value)
        self._transactions.respond(transaction, response)

    def _ack(self, ack: SipMessage, to_tag: str | None) -> None:
        call = self.calls.get(to_tag or "")
        if call is not None and call.dialog.call_id == ack.get("call-id"):
            call.on_ack(ack)
        elif not self._transactions.acknowledge(ack):
            self.stats["stray_ack"] += 1

    def _cancel(self, transaction: ServerTransaction, key: tuple[str, str, str]) -> None:
        invite = self._transactions.find((key[0], key[1], "INVITE"))
        if invite is None:
            self._reply(transaction, 481)
            return
        transaction.to_tag = invite.to_tag  # the same tag as the INVITE's responses
        self._reply(transaction, 200)
        if not invite.completed and invite.on_cancel is not None:
            invite.on_cancel()

    def _in_dialog(self, transaction: ServerTransaction, to_tag: str) -> None:
        request = transaction.request
        call = self.calls[to_tag]  # checked in _refusal: this dialog, from its peer
        if not call.dialog.accept_cseq(request):
            self._reply(transaction, 500, [("retry-after", "1")])
            return
        method = request.method
        if method == "INVITE":
            call.on_reinvite(request, transaction)
        elif method == "BYE":
            call.on_bye(transaction)
        elif method == "INFO":
            call.on_info(request, transaction)
        elif method == "OPTIONS":
            self._options(transaction)
        else:
            self._unsupported(transaction)

    def _out_of_dialog(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        method = str(request.method)  # admitted by _refusal: an allowed peer or a good digest
        required = [option for value in request.get_all("require") for option in split_list(value)]
        if required and method not in ("ACK", "CANCEL"):
            self._reply(transaction, 420, [("unsupported", ", ".join(required))])
        elif method == "INVITE":
            self._invite(transaction)
        elif method == "OPTIONS":
            self._options(transaction)
        elif method in ("BYE", "INFO"):
            self._reply(transaction, 481)
        else:
            self._unsupported(transaction)

    def _unsupported(self, transaction: ServerTransaction) -> None:
        known = str(transaction.request.method) in KNOWN_UNSUPPORTED
        self._reply(transaction, 405 if known else 501, [("allow", ALLOW)])

    def _options(self, transaction: ServerTransaction) -> None:
        self._reply(
            transaction,
            200,
            [("allow", ALLOW), ("accept", "application/sdp"), ("accept-language", "en")],
        )

    def _invite(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        if any(call.dialog.call_id == request.get("call-id") for call in self.calls.values()):
            self._reply(transaction, 482)
            return
        if len(self.calls) >= self.settings.sip.max_calls:
            self.stats["busy"] += 1
            log.info("call refused: %d calls up (486)", len(self.calls))
            self._reply(transaction, 486, [("retry-after", "30")])
            return
        offer = negotiated = None
        if request.body.strip():
            content_type = (request.get("content-type") or "").split(";")[0].strip().lower()
            if content_type != "application/sdp":
                self._reply(transaction, 415, [("accept", "application/sdp")])
                return
            try:
                offer = parse_sdp(request.body.decode("utf-8", errors="replace"))
                negotiated = negotiate(offer)
            except SdpError as error:
                self.stats["no_codec" if error.status == 488 else "bad_sdp"] += 1
                self._reply(transaction, error.status, [("warning", '304 - "Media type not available"')])
                return
        try:
            # The one line count of every transport (SESSIONS__MAX_CONCURRENT), before any media.
            line = self.host.reserve_line()
        except LinesBusy:
            self.stats["lines_busy"] += 1
            log.warning("call refused: every line is busy (503)")
            retry = str(self.settings.sessions.busy_retry_after_s)
            self._reply(transaction, 503, [("retry-after", retry)])
            return
        self._reply(transaction, 100)
        services = CallServices(
            settings=self.settings.sip,
            host=self.host,
            ports=self._ports,
            timers=self.timers,
            transactions=self._transactions,
            client=self._client,
            address=self.address,
            contact=self._contact,
            via_sent_by=lambda flow: f"{self._uri_host}:{self.port}",
            forget=self._forget,
        )
        call = Call(services, request, transaction, transaction.flow, offer, negotiated, line=line)
        self.calls[call.local_tag] = call
        transaction.on_cancel = call.cancel
        self.stats["calls"] += 1
        log.info("call %s: incoming (%s)", call.tag, transaction.flow.protocol)
        self._spawn(call.setup(), f"sip-setup-{call.tag}")

    def _contact(self, flow: Flow) -> str:
        return f"<sip:agent@{self._uri_host}:{self.port};transport={flow.protocol}>"

    @property
    def _uri_host(self) -> str:
        return f"[{self.address}]" if ":" in self.address else self.address

    def _forget(self, call: Call) -> None:
        if self.calls.get(call.local_tag) is call:
            del self.calls[call.local_tag]


def _stamp_via(message: SipMessage, flow: Flow) -> None:
    """RFC 3581: note on the top Via where the request really came from."""
    index = next(i for i, (name, _) in enumerate(message.headers) if name == "via")
    first, *others = split_list(message.headers[index][1])
    via = Via.parse(first)
    host, port = flow.remote
    if via.host.strip("[]") != host:
        via.params["received"] = host
    if "rport" in via.params:
        via.params["rport"] = str(port)
        via.params["received"] = host
    message.headers[index] = ("via", ", ".join([str(via), *others]))


def _answerable(request: SipMessage) -> bool:
    """Whether a broken request still says where and how to answer it."""
    if not all(request.get(name) for name in ("via", "from", "to", "call-id", "cseq")):
        return False
    try:
        Via.parse(request.get_all("via")[0])
    except (ValueError, IndexError):
        return False
    return True
