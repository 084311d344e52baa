"""SIP message parsing: what real peers send parses; what breaks the rules says which status to answer."""

from __future__ import annotations

import pytest

from media.sip.headers import NameAddr, Via
from media.sip.message import (
    MAX_BODY_BYTES,
    MAX_HEADERS,
    SipParseError,
    StreamFramer,
    parse_message,
    response_to,
)

INVITE = (
    b"INVITE sip:agent@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-1;rport\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-0\r\n"
    b"Max-Forwards: 69\r\n"
    b'From: "Jane Doe" <sip:+15551234567@trunk.example>;tag=abc\r\n'
    b"To: <sip:agent@127.0.0.1>\r\n"
    b"Call-ID: 1234@10.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:+15551234567@10.0.0.1:5070>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\nv=0\r\n"
)


def test_a_trunk_invite_parses() -> None:
    message = parse_message(INVITE)
    assert message.method == "INVITE" and message.uri == "sip:agent@127.0.0.1:5060"
    assert len(message.get_all("via")) == 2
    assert message.cseq == (1, "INVITE")
    assert message.body == b"v=0\r"  # Content-Length decides; the rest is discarded
    caller = NameAddr.parse(message.get("from") or "")
    assert caller.tag == "abc" and caller.display == "Jane Doe"
    via = Via.parse(message.get_all("via")[0])
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "10.0.0.1", 5070, "z9hG4bK-1")


def test_compact_forms_folding_and_comma_lists() -> None:
    text = (
        b"OPTIONS sip:agent@h SIP/2.0\r\n"
        b"v: SIP/2.0/TCP a:1;branch=z9hG4bKx, SIP/2.0/UDP b;branch=z9hG4bKy\r\n"
        b"f: <sip:x@y>;tag=1\r\nt: <sip:a@h>\r\ni: cid\r\nCSeq: 5\r\n OPTIONS\r\nl: 0\r\n\r\n"
    )
    message = parse_message(text)
    assert message.get("call-id") == "cid"
    assert message.cseq == (5, "OPTIONS")
    assert [Via.parse(v).host for v in message.get_all("via")] == ["a", "b"]


def test_serialising_counts_the_body() -> None:
    message = parse_message(INVITE)
    message.body = b"hello"
    again = parse_message(message.to_bytes())
    assert again.body == b"hello" and again.get("content-length") == "5"


def test_responses_echo_the_dialog_headers_and_add_our_tag() -> None:
    request = parse_message(INVITE)
    response = parse_message(response_to(request, 486, to_tag="xyz").to_bytes())
    assert response.status == 486 and response.reason == "Busy Here"
    assert response.get_all("via") == request.get_all("via")
    assert NameAddr.parse(response.get("to") or "").tag == "xyz"
    assert response.get("call-id") == "1234@10.0.0.1"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (INVITE.replace(b"Content-Length: 4", b"Content-Length: 400"), 400),  # body shorter than announced
        (INVITE.replace(b"Content-Length: 4", b"Content-Length: -1"), 400),
        (INVITE.replace(b"Content-Length: 4", b"Content-Length: 4\r\nl: 5"), 400),
        (INVITE.replace(b"Content-Length: 4", f"Content-Length: {MAX_BODY_BYTES + 1}".encode()), 413),
        (INVITE.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), 505),
        (INVITE.replace(b"Call-ID: 1234@10.0.0.1\r\n", b""), 400),
        (INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), 400),
        (INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 99999999999 INVITE"), 400),
        (INVITE.replace(b"Max-Forwards: 69", b"Max-Forwards: lots"), 400),
        (INVITE.replace(b"To: <sip:agent@127.0.0.1>", b"To <sip:agent@127.0.0.1>"), 400),
        (INVITE.replace(b"Jane Doe", b"Jane\x00Doe"), 400),
        (INVITE.replace(b"Jane Doe", b"Jane \xff\xfe Doe"), 400),
        (INVITE.replace(b"Max-Forwards: 69\r\n", b"X-A: 1\r\n" * (MAX_HEADERS + 1)), 513),
        (INVITE.replace(b"Max-Forwards: 69\r\n", b"X-A: " + b"a" * 20000 + b"\r\n"), 513),
        (b"HELLO WORLD\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello
    ],
)
def test_broken_messages_say_what_to_answer(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as error:
        parse_message(data)
    assert error.value.status == status


def test_the_partial_message_allows_an_answer() -> None:
    with pytest.raises(SipParseError) as error:
        parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: 400"))
    partial = error.value.partial
    assert partial is not None and partial.method == "INVITE" and partial.get("call-id")


def test_tcp_framing_by_content_length_with_keepalives() -> None:
    framer = StreamFramer()
    exact = INVITE.replace(b"Content-Length: 4", b"Content-Length: 5")
    stream = b"\r\n\r\n" + exact + exact
    out = []
    for index in range(0, len(stream), 7):  # arbitrary segment boundaries
        out += framer.feed(stream[index : index + 7])
    assert out == [exact, exact] and framer.keepalives == 1


def test_tcp_without_content_length_cannot_be_framed() -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(INVITE.replace(b"Content-Length: 4\r\n", b""))
    with pytest.raises(SipParseError) as error:
        StreamFramer().feed(b"A" * 20000)
    assert error.value.status == 513
