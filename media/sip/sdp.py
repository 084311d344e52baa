"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264): G.711 and telephone-events.

``negotiate`` picks the caller's first G.711 codec and its telephone-event payload type;
``build_answer`` mirrors every offered m-line (the audio one accepted, the others rejected
with port 0). Hold is read from the direction attribute (or the old ``c=0.0.0.0`` form).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from media.sip.g711 import CODECS, PCMA, PCMU, Codec

MAX_SDP_LINES = 200
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
DTMF_EVENTS = "0-16"


class SdpError(ValueError):
    """The offer cannot be used (400 if malformed, 488 if nothing acceptable in it)."""

    def __init__(self, message: str, status: int = 488) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)  # pt -> (encoding, clock rate)
    direction: str | None = None
    line: str = ""  # the m= line as offered


@dataclass
class SessionDescription:
    connection: str | None = None
    direction: str | None = None
    media: list[MediaDescription] = field(default_factory=list)


@dataclass(frozen=True)
class Negotiated:
    codec: Codec
    dtmf_payload_type: int | None
    remote: tuple[str, int]  # where the caller said it receives RTP (port 0: nowhere)
    direction: str  # the caller's direction
    media_index: int  # which m-line is the accepted audio

    @property
    def caller_receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def parse_sdp(text: str) -> SessionDescription:
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or not lines[0].startswith("v=0") or len(lines) > MAX_SDP_LINES:
        raise SdpError("not SDP", 400)
    session = SessionDescription()
    current: MediaDescription | None = None
    for line in lines:
        kind, sep, value = line.partition("=")
        if not sep or len(kind) != 1:
            raise SdpError("bad SDP line", 400)
        if kind == "m":
            current = _media(value, line)
            session.media.append(current)
        elif kind == "c":
            address = _connection(value)
            if current is None:
                session.connection = address
            else:
                current.connection = address
        elif kind == "a":
            _attribute(session, current, value)
    return session


def _media(value: str, line: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
        raise SdpError("bad m= line", 400)
    port = int(parts[1].split("/")[0])
    if port > 65535:
        raise SdpError("bad m= port", 400)
    return MediaDescription(parts[0].lower(), port, parts[2], parts[3:], line=line)


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError("bad c= line", 400)
    address = parts[2].split("/")[0]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SdpError("c= is not an IP address", 400) from None
    return address


def _attribute(session: SessionDescription, media: MediaDescription | None, value: str) -> None:
    name, _, rest = value.partition(":")
    name = name.strip().lower()
    if name in DIRECTIONS:
        if media is None:
            session.direction = name
        else:
            media.direction = name
    elif media is None:
        return
    elif name == "rtpmap":
        pt, _, encoding = rest.partition(" ")
        fields = encoding.strip().split("/")
        if pt.isdigit() and len(fields) >= 2 and fields[1].isdigit():
            media.rtpmap[int(pt)] = (fields[0].upper(), int(fields[1]))


def _codec_for(media: MediaDescription, fmt: str) -> Codec | None:
    if not fmt.isdigit():
        return None
    pt = int(fmt)
    mapped = media.rtpmap.get(pt)
    if mapped is not None:
        name, rate = mapped
        codec = CODECS.get(name)
        return codec if codec is not None and rate == 8000 and codec.payload_type == pt else None
    return {PCMU.payload_type: PCMU, PCMA.payload_type: PCMA}.get(pt)


def negotiate(offer: SessionDescription) -> Negotiated:
    """The first usable audio stream of the offer, or ``SdpError`` (488: nothing acceptable)."""
    for index, media in enumerate(offer.media):
        if media.media != "audio" or media.port == 0 or media.proto.upper() != "RTP/AVP":
            continue
        codec = next((c for c in (_codec_for(media, fmt) for fmt in media.formats) if c), None)
        if codec is None:
            continue
        dtmf = next(
            (pt for pt, (name, rate) in media.rtpmap.items()
             if name == "TELEPHONE-EVENT" and rate == 8000 and str(pt) in media.formats),
            None,
        )  # fmt: skip
        address = media.connection or offer.connection
        if address is None:
            raise SdpError("no connection address", 400)
        direction = media.direction or offer.direction or "sendrecv"
        if address in ("0.0.0.0", "::"):  # RFC 2543 hold
            direction = "sendonly" if direction == "sendrecv" else "inactive"
        return Negotiated(codec, dtmf, (address, media.port), direction, index)
    raise SdpError("no acceptable audio codec")


def _session_lines(address: str, session_id: int, version: int) -> list[str]:
    family = "IP6" if ":" in address else "IP4"
    return [
        "v=0",
        f"o=- {session_id} {version} IN {family} {address}",
        "s=patient-advocacy-agent",
        f"c=IN {family} {address}",
        "t=0 0",
    ]


def _audio_lines(port: int, codecs: list[Codec], dtmf_pt: int | None, direction: str) -> list[str]:
    formats = [str(c.payload_type) for c in codecs] + ([str(dtmf_pt)] if dtmf_pt is not None else [])
    lines = [f"m=audio {port} RTP/AVP {' '.join(formats)}"]
    lines += [f"a=rtpmap:{c.payload_type} {c.name}/8000" for c in codecs]
    if dtmf_pt is not None:
        lines += [f"a=rtpmap:{dtmf_pt} telephone-event/8000", f"a=fmtp:{dtmf_pt} {DTMF_EVENTS}"]
    return [*lines, "a=ptime:20", f"a={direction}"]


def build_answer(
    offer: SessionDescription,
    negotiated: Negotiated,
    *,
    address: str,
    port: int,
    session_id: int,
    version: int,
) -> str:
    """Our answer: the accepted audio stream, every other offered stream rejected (port 0)."""
    direction = ANSWER_DIRECTION[negotiated.direction]
    lines = _session_lines(address, session_id, version)
    for index, media in enumerate(offer.media):
        if index == negotiated.media_index:
            lines += _audio_lines(port, [negotiated.codec], negotiated.dtmf_payload_type, direction)
        else:
            lines.append(f"m={media.media} 0 {media.proto} {' '.join(media.formats)}")
    return "\r\n".join(lines) + "\r\n"


def build_offer(
    *, address: str, port: int, session_id: int, version: int, direction: str = "sendrecv",
    codecs: tuple[Codec, ...] = (PCMU, PCMA), dtmf_payload_type: int | None = 101,
) -> str:  # fmt: skip
    """An offer of one audio stream (for offerless INVITEs, and for the test/benchmark caller)."""
    lines = _session_lines(address, session_id, version)
    lines += _audio_lines(port, list(codecs), dtmf_payload_type, direction)
    return "\r\n".join(lines) + "\r\n"
