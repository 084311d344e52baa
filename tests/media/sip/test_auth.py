"""Who may call: the trunk allow-list, and digest authentication (SHA-256; MD5 only when allowed;
stale nonces; replayed nonce counts)."""

from __future__ import annotations

import hashlib
import time

import pytest

from media.sip.auth import Authorizer, DigestAuth, PeerAllowList, Verdict, parse_digest


def answer(
    challenge: str, *, password: str = "s3cret", uri: str = "sip:agent@h", nc: str = "00000001"
) -> str:
    fields = parse_digest(challenge)
    digest = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[fields["algorithm"]]
    h = lambda text: digest(text.encode()).hexdigest()  # noqa: E731
    ha1, ha2 = h(f"trunk:{fields['realm']}:{password}"), h(f"INVITE:{uri}")
    response = h(f"{ha1}:{fields['nonce']}:{nc}:c0ffee:auth:{ha2}")
    return (
        f'Digest username="trunk", realm="{fields["realm"]}", nonce="{fields["nonce"]}", uri="{uri}", '
        f'response="{response}", algorithm={fields["algorithm"]}, qop=auth, nc={nc}, cnonce="c0ffee"'
    )


@pytest.mark.parametrize("index", [0, 1])
def test_a_correct_digest_is_accepted_with_either_algorithm_when_md5_is_allowed(index: int) -> None:
    auth = DigestAuth("realm", "trunk", "s3cret", allow_md5=True)
    challenge = auth.challenges()[index]
    assert auth.check("INVITE", "sip:agent@h", answer(challenge)) == Verdict.ALLOW


def test_sha256_only_by_default_and_md5_answers_are_refused() -> None:
    auth = DigestAuth("realm", "trunk", "s3cret")
    (challenge,) = auth.challenges()
    assert "algorithm=SHA-256" in challenge and 'qop="auth"' in challenge
    md5 = answer(challenge.replace("algorithm=SHA-256", "algorithm=MD5"))
    assert auth.check("INVITE", "sip:agent@h", md5) == Verdict.CHALLENGE
    no_algorithm = md5.replace(", algorithm=MD5", "")  # RFC 7616: that means MD5
    assert auth.check("INVITE", "sip:agent@h", no_algorithm) == Verdict.CHALLENGE
    assert auth.check("INVITE", "sip:agent@h", answer(challenge)) == Verdict.ALLOW


def test_the_preferred_algorithm_is_offered_first() -> None:
    first, second = DigestAuth("realm", "trunk", "s3cret", allow_md5=True).challenges()
    assert "algorithm=SHA-256" in first and "algorithm=MD5" in second and 'qop="auth"' in first


def test_a_captured_answer_cannot_be_replayed() -> None:
    auth = DigestAuth("realm", "trunk", "s3cret")
    (challenge,) = auth.challenges()
    captured = answer(challenge)
    assert auth.check("INVITE", "sip:agent@h", captured) == Verdict.ALLOW
    assert auth.check("INVITE", "sip:agent@h", captured) == Verdict.CHALLENGE, "the same nc again"
    assert auth.check("INVITE", "sip:agent@h", answer(challenge, nc="00000002")) == Verdict.ALLOW
    assert auth.check("INVITE", "sip:agent@h", answer(challenge, nc="00000002")) == Verdict.CHALLENGE
    assert auth.check("INVITE", "sip:agent@h", answer(challenge, nc="00000001")) == Verdict.CHALLENGE
    (other,) = auth.challenges()  # every challenge has its own nonce, with its own count
    assert other != challenge and auth.check("INVITE", "sip:agent@h", answer(other)) == Verdict.ALLOW


def test_an_answer_without_qop_or_nonce_count_is_refused() -> None:
    auth = DigestAuth("realm", "trunk", "s3cret")
    (challenge,) = auth.challenges()
    fields = parse_digest(challenge)
    h = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    ha1, ha2 = h("trunk:realm:s3cret"), h("INVITE:sip:agent@h")
    nonce = fields["nonce"]
    response = h(f"{ha1}:{nonce}:{ha2}")
    legacy = (
        f'Digest username="trunk", realm="realm", nonce="{nonce}", uri="sip:agent@h", '
        f'response="{response}", algorithm=SHA-256'
    )
    assert auth.check("INVITE", "sip:agent@h", legacy) == Verdict.CHALLENGE


def test_an_expired_nonce_is_stale_and_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = DigestAuth("realm", "trunk", "s3cret")
    (challenge,) = auth.challenges()
    assert auth.check("INVITE", "sip:agent@h", answer(challenge)) == Verdict.ALLOW
    assert auth.tracked_nonces == 1
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    assert auth.check("INVITE", "sip:agent@h", answer(challenge, nc="00000002")) == "stale"
    (fresh,) = auth.challenges()
    assert auth.check("INVITE", "sip:agent@h", answer(fresh)) == Verdict.ALLOW
    assert auth.tracked_nonces == 1  # the expired nonce's count is not kept


@pytest.mark.parametrize(
    "tamper",
    [
        lambda a: a.replace("s3cret", "wrong"),
        lambda a: a.replace('uri="sip:agent@h"', 'uri="sip:other@h"'),
        lambda a: a.replace('username="trunk"', 'username="admin"'),
        lambda a: a.replace('realm="realm"', 'realm="other"'),
    ],
)
def test_a_wrong_digest_is_challenged_again(tamper) -> None:
    auth = DigestAuth("realm", "trunk", "s3cret")
    challenge = auth.challenges()[0]
    good = answer(challenge, password="wrong") if tamper(answer(challenge)) == answer(challenge) else None
    header = good or tamper(answer(challenge))
    assert auth.check("INVITE", "sip:agent@h", header) == Verdict.CHALLENGE


def test_a_forged_or_expired_nonce_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = DigestAuth("realm", "trunk", "s3cret")
    other = DigestAuth("realm", "trunk", "s3cret")  # another key: its nonces are forgeries here
    assert auth.check("INVITE", "sip:agent@h", answer(other.challenges()[0])) == Verdict.CHALLENGE
    challenge = auth.challenges()[0]
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    assert auth.check("INVITE", "sip:agent@h", answer(challenge)) == "stale"
    assert "stale=true" in auth.challenges(stale=True)[0]


def test_allow_list_by_network() -> None:
    allow = PeerAllowList(["127.0.0.0/8", "203.0.113.0/24", "2001:db8::/32"])
    assert allow.allows("127.0.0.1") and allow.allows("203.0.113.77") and allow.allows("2001:db8::5")
    assert allow.allows("::ffff:203.0.113.9")
    assert not allow.allows("198.51.100.1") and not allow.allows("not-an-ip")


def test_the_authorizer_forbids_without_credentials_and_challenges_with_them() -> None:
    allow = PeerAllowList(["10.0.0.0/8"])
    assert Authorizer(allow, None).check("10.1.1.1", "INVITE", "sip:a@h", None) == Verdict.ALLOW
    assert Authorizer(allow, None).check("192.0.2.1", "INVITE", "sip:a@h", None) == Verdict.FORBID
    digest = DigestAuth("realm", "trunk", "s3cret")
    assert Authorizer(allow, digest).check("192.0.2.1", "INVITE", "sip:a@h", None) == Verdict.CHALLENGE
