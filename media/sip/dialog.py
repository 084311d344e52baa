"""A dialog (RFC 3261 section 12) as the called party: identifiers, CSeq, in-dialog requests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from media.sip.flow import Flow
from media.sip.headers import NameAddr, Via, new_branch
from media.sip.message import SipMessage

DialogKey = tuple[str, str, str]  # (Call-ID, our tag, their tag)


@dataclass
class Dialog:
    call_id: str
    local: NameAddr  # the INVITE's To, with our tag
    remote: NameAddr  # the INVITE's From (their tag)
    remote_target: str  # their Contact URI: the Request-URI of our requests
    route_set: list[str]  # Record-Route values, in order
    remote_cseq: int
    flow: Flow
    via_sent_by: str  # our host:port for the Via of our requests
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(2**16) + 1)

    @classmethod
    def from_invite(cls, invite: SipMessage, local_tag: str, flow: Flow, via_sent_by: str) -> Dialog:
        local = NameAddr.parse(invite.get("to") or "")
        local.params["tag"] = local_tag
        remote = NameAddr.parse(invite.get("from") or "")
        contacts = invite.get_all("contact")
        target = NameAddr.parse(contacts[0]).uri if contacts else str(invite.uri)
        number, _ = invite.cseq
        return cls(
            call_id=str(invite.get("call-id")),
            local=local,
            remote=remote,
            remote_target=target,
            route_set=invite.get_all("record-route"),
            remote_cseq=number,
            flow=flow,
            via_sent_by=via_sent_by,
        )

    @property
    def key(self) -> DialogKey:
        return self.call_id, self.local.tag or "", self.remote.tag or ""

    def accept_cseq(self, request: SipMessage) -> bool:
        """In-dialog requests must carry increasing CSeq numbers (ACK and CANCEL excepted)."""
        number, _ = request.cseq
        if request.method in ("ACK", "CANCEL"):
            return True
        if number <= self.remote_cseq:
            return False
        self.remote_cseq = number
        return True

    def request(
        self, method: str, extra: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> SipMessage:
        """A new request of ours within the dialog (BYE)."""
        self.local_cseq += 1
        message = SipMessage(method=method, uri=self.remote_target)
        via = Via(
            self.flow.protocol.upper(),
            *_split_host_port(self.via_sent_by),
            {"branch": new_branch(), "rport": ""},
        )
        message.add("via", str(via))
        message.add("max-forwards", "70")
        for route in self.route_set:
            message.add("route", route)
        message.add("from", str(self.local))
        message.add("to", str(self.remote))
        message.add("call-id", self.call_id)
        message.add("cseq", f"{self.local_cseq} {method}")
        for name, value in extra or []:
            message.add(name, value)
        message.body = body
        return message


def _split_host_port(sent_by: str) -> tuple[str, int | None]:
    host, _, port = sent_by.rpartition(":")
    if not host or "]" in port:
        return sent_by, None
    return host, int(port) if port.isdigit() else None
