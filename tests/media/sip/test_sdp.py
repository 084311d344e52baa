"""SDP offer/answer: the caller's codec, its DTMF payload type, hold, rejected extra streams."""

from __future__ import annotations

import pytest

from media.sip.g711 import PCMA, PCMU
from media.sip.sdp import SdpError, build_answer, build_offer, negotiate, parse_sdp


def offer(formats: str = "0 8 101", extra: str = "", connection: str = "192.0.2.10", media: str = "") -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\n"
        f"c=IN IP4 {connection}\r\nt=0 0\r\n{media}"
        f"m=audio 40000 RTP/AVP {formats}\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a=fmtp:101 0-15\r\n{extra}"
    )


def test_the_callers_first_g711_codec_and_its_dtmf_payload_type_win() -> None:
    chosen = negotiate(parse_sdp(offer("8 0 101")))
    assert chosen.codec is PCMA
    assert chosen.dtmf_payload_type == 101
    assert chosen.remote == ("192.0.2.10", 40000)
    assert chosen.direction == "sendrecv"
    assert negotiate(parse_sdp(offer("18 0"))).codec is PCMU  # G.729 first: skipped


def test_an_offer_without_g711_is_not_acceptable() -> None:
    with pytest.raises(SdpError) as error:
        negotiate(parse_sdp(offer("9 18", "a=rtpmap:9 G722/8000\r\n")))
    assert error.value.status == 488


def test_srtp_only_offers_are_not_acceptable() -> None:
    with pytest.raises(SdpError):
        negotiate(parse_sdp(offer().replace("RTP/AVP", "RTP/SAVP")))


@pytest.mark.parametrize(
    "text", ["", "hello", "v=0\r\nm=audio x RTP/AVP 0\r\n", "v=0\r\nc=IN IP4 nowhere\r\n"]
)
def test_malformed_sdp_is_a_bad_request(text: str) -> None:
    with pytest.raises(SdpError) as error:
        negotiate(parse_sdp(text))
    assert error.value.status == 400


@pytest.mark.parametrize(
    ("attribute", "connection", "caller", "answer"),
    [
        ("a=sendonly\r\n", "192.0.2.10", "sendonly", "recvonly"),
        ("a=inactive\r\n", "192.0.2.10", "inactive", "inactive"),
        ("", "0.0.0.0", "sendonly", "recvonly"),  # the RFC 2543 way to hold
        ("a=sendrecv\r\n", "192.0.2.10", "sendrecv", "sendrecv"),
    ],
)
def test_hold_directions_are_answered_in_kind(
    attribute: str, connection: str, caller: str, answer: str
) -> None:
    parsed = parse_sdp(offer(extra=attribute, connection=connection))
    chosen = negotiate(parsed)
    assert chosen.direction == caller
    text = build_answer(parsed, chosen, address="127.0.0.1", port=20000, session_id=7, version=2)
    assert f"a={answer}" in text


def test_the_answer_mirrors_every_offered_stream() -> None:
    parsed = parse_sdp(offer(media="m=video 40002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"))
    chosen = negotiate(parsed)
    answer = build_answer(parsed, chosen, address="127.0.0.1", port=20000, session_id=7, version=2)
    lines = [line for line in answer.splitlines() if line.startswith("m=")]
    assert lines == ["m=video 0 RTP/AVP 96", "m=audio 20000 RTP/AVP 0 101"]
    assert "a=rtpmap:101 telephone-event/8000" in answer and "a=ptime:20" in answer
    assert "c=IN IP4 127.0.0.1" in answer


def test_our_own_offer_can_be_negotiated() -> None:
    ours = build_offer(address="127.0.0.1", port=20002, session_id=1, version=1)
    chosen = negotiate(parse_sdp(ours))
    assert chosen.codec is PCMU and chosen.dtmf_payload_type == 101 and chosen.remote == ("127.0.0.1", 20002)
