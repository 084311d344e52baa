"""SIP messages (RFC 3261 section 7): a bounded, strict parser, the serialiser, TCP framing.

Everything that arrives from the network passes ``parse_message``; it either returns a
message or raises ``SipParseError`` with the status to answer (400 malformed, 413 body too
large, 505 version, 513 message too large) and whatever part of the message it could read, so
that the server can answer or drop it. Limits: the whole message, the header section, the
number of header lines and the body are bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_MESSAGE_BYTES = 65535
MAX_HEAD_BYTES = 16384
MAX_BODY_BYTES = 16384
MAX_HEADERS = 100

COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length", "c": "content-type",
    "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via", "o": "event", "r": "refer-to",
    "u": "allow-events", "x": "session-expires",
}  # fmt: skip
DISPLAY = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "max-forwards": "Max-Forwards", "record-route": "Record-Route",
}  # fmt: skip
# Headers whose value is a comma-separated list (so one line may carry several values).
LIST_HEADERS = {
    "via", "route", "record-route", "contact", "allow", "supported", "require", "proxy-require",
    "unsupported", "accept",
}  # fmt: skip
REQUIRED = ("via", "from", "to", "call-id", "cseq")

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_REQUEST_LINE = re.compile(rf"^({_TOKEN}) ([^\x00-\x20\x7f]+) (SIP/\d+\.\d+)$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6]\d\d) ([^\x00-\x08\x0a-\x1f\x7f]*)$")
_HEADER_NAME = re.compile(rf"^{_TOKEN}$")
_CSEQ = re.compile(rf"^(\d{{1,10}})\s+({_TOKEN})$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTENT_LENGTH = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)


class SipParseError(ValueError):
    """Unusable input: ``status`` is what to answer; ``partial`` is what could be read (maybe None)."""

    def __init__(self, status: int, reason: str, partial: SipMessage | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.partial = partial


@dataclass
class SipMessage:
    """A request (``method``, ``uri``) or a response (``status``, ``reason``); headers keep order."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower-case full name, value)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, list headers split at their top-level commas."""
        name = name.lower()
        values = [value for key, value in self.headers if key == name]
        if name in LIST_HEADERS:
            return [part for value in values for part in split_list(value)]
        return values

    def add(self, name: str, value: str) -> None:
        self.headers.append((name.lower(), value))

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.get("cseq") or ""
        match = _CSEQ.match(value.strip())
        if not match:
            raise SipParseError(400, "bad CSeq")
        return int(match.group(1)), match.group(2)

    def to_bytes(self) -> bytes:
        if self.method is not None:
            start = f"{self.method} {self.uri} SIP/2.0"
        else:
            start = f"SIP/2.0 {self.status} {self.reason}"
        lines = [start]
        lines += [f"{display_name(key)}: {value}" for key, value in self.headers if key != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def display_name(name: str) -> str:
    return DISPLAY.get(name) or "-".join(part.capitalize() for part in name.split("-"))


def split_list(value: str) -> list[str]:
    """Split at commas outside quotes and angle brackets."""
    parts, current, quoted, angle, escaped = [], [], False, False, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        elif char == "," and not quoted and not angle:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = data.find(separator)
        if index >= 0:
            return data[:index], data[index + len(separator) :]
    return data, b""


def parse_message(data: bytes) -> SipMessage:
    """Parse one message (a UDP datagram, or one framed by ``StreamFramer``)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(513, "Message Too Large")
    head, rest = _split_head(data.lstrip(b"\r\n"))
    if len(head) > MAX_HEAD_BYTES:
        raise SipParseError(513, "Message Too Large")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError(400, "Bad Request (not UTF-8)") from None
    lines = text.replace("\r\n", "\n").split("\n")
    message = _start_line(lines[0])
    _read_headers(message, lines[1:])
    _read_body(message, rest)
    _check(message)
    return message


def _start_line(line: str) -> SipMessage:
    request = _REQUEST_LINE.match(line)
    if request:
        method, uri, version = request.groups()
        message = SipMessage(method=method, uri=uri)
        if version != "SIP/2.0":
            raise SipParseError(505, "Version Not Supported", message)
        return message
    status = _STATUS_LINE.match(line)
    if status:
        return SipMessage(status=int(status.group(1)), reason=status.group(2))
    raise SipParseError(400, "Bad Request (start line)")


def _read_headers(message: SipMessage, lines: list[str]) -> None:
    if len(lines) > MAX_HEADERS:
        raise SipParseError(513, "Message Too Large (too many headers)", message)
    for line in lines:
        if not line:
            continue
        if line[0] in " \t":  # folded continuation of the previous header
            if not message.headers:
                raise SipParseError(400, "Bad Request (folding)", message)
            if _CONTROL.search(line):
                raise SipParseError(400, "Bad Request (control character)", message)
            name, value = message.headers.pop()
            message.headers.append((name, f"{value} {line.strip()}".strip()))
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not _HEADER_NAME.match(name):
            raise SipParseError(400, "Bad Request (header line)", message)
        if _CONTROL.search(value):
            raise SipParseError(400, "Bad Request (control character)", message)
        message.headers.append((COMPACT.get(name, name), value.strip()))


def _read_body(message: SipMessage, rest: bytes) -> None:
    lengths = {value for key, value in message.headers if key == "content-length"}
    if len(lengths) > 1:
        raise SipParseError(400, "Bad Request (Content-Length)", message)
    if not lengths:
        if len(rest) > MAX_BODY_BYTES:
            raise SipParseError(413, "Request Entity Too Large", message)
        message.body = rest
        return
    value = lengths.pop()
    if not value.isdigit() or len(value) > 9:
        raise SipParseError(400, "Bad Request (Content-Length)", message)
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise SipParseError(413, "Request Entity Too Large", message)
    if length > len(rest):
        raise SipParseError(400, "Bad Request (body shorter than Content-Length)", message)
    message.body = rest[:length]  # extra bytes after the body are discarded (RFC 3261 18.3)


def _check(message: SipMessage) -> None:
    missing = [name for name in REQUIRED if not message.get(name)]
    if missing:
        raise SipParseError(400, f"Bad Request (missing {display_name(missing[0])})", message)
    number, method = message.cseq
    if number >= 2**31:
        raise SipParseError(400, "Bad Request (CSeq)", message)
    if message.is_request and method != message.method:
        raise SipParseError(400, "Bad Request (CSeq method)", message)
    max_forwards = message.get("max-forwards")
    if max_forwards is not None and (not max_forwards.isdigit() or int(max_forwards) > 255):
        raise SipParseError(400, "Bad Request (Max-Forwards)", message)


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (mandatory on streams)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.keepalives = 0  # CRLF pings seen (RFC 5626): answer each with one CRLF

    def feed(self, data: bytes) -> list[bytes]:
        """Complete messages so far; raises ``SipParseError`` when the stream cannot be framed."""
        self._buffer += data
        messages = []
        while True:
            while self._buffer.startswith(b"\r\n\r\n"):
                del self._buffer[:4]
                self.keepalives += 1
            while self._buffer[:2] == b"\r\n" or self._buffer[:1] == b"\n":
                del self._buffer[: 2 if self._buffer[:2] == b"\r\n" else 1]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise SipParseError(513, "Message Too Large")
                return messages
            if end > MAX_HEAD_BYTES:
                raise SipParseError(513, "Message Too Large")
            head = bytes(self._buffer[:end])
            match = _CONTENT_LENGTH.search(head)
            if match is None:
                raise SipParseError(400, "Bad Request (no Content-Length on a stream)")
            value = match.group(1)
            if not value.isdigit() or int(value) > MAX_BODY_BYTES:
                raise SipParseError(413 if value.isdigit() else 400, "bad Content-Length")
            total = end + 4 + int(value)
            if len(self._buffer) < total:
                return messages
            messages.append(bytes(self._buffer[:total]))
            del self._buffer[:total]


REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Request Entity Too Large",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "Version Not Supported", 513: "Message Too Large",
}  # fmt: skip


def response_to(
    request: SipMessage, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> SipMessage:
    """A response carrying the request's Via, From, To (+ our tag), Call-ID and CSeq."""
    response = SipMessage(status=status, reason=reason or REASONS.get(status, "Unknown"))
    for name, value in request.headers:
        if name == "via":
            response.add(name, value)
    for name in ("from", "to", "call-id", "cseq"):
        value = request.get(name)
        if value is not None:
            if name == "to" and to_tag and status > 100 and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"
            response.add(name, value)
    return response
