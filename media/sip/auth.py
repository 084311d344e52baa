"""Who may call: an allow-list of trunk addresses (CIDR), and/or SIP digest authentication.

A request from an allowed peer passes. Otherwise, with digest credentials configured, the
request must carry a valid ``Authorization`` (401 with a challenge if not); without them it is
refused (403). Nonces are stateless: a timestamp signed with a per-process key, valid for
``NONCE_TTL_S``; an expired one gets a fresh challenge with ``stale=true``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass
from enum import Enum

from media.sip.message import split_list

NONCE_TTL_S = 300.0
ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}


class Verdict(Enum):
    ALLOW = "allow"
    CHALLENGE = "challenge"  # 401
    FORBID = "forbid"  # 403


class PeerAllowList:
    def __init__(self, networks: list[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self._networks)


def parse_digest(value: str) -> dict[str, str]:
    """``Digest a="x", b=y`` -> {"a": "x", "b": "y"} (empty if not a digest header)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    fields = {}
    for part in split_list(rest):
        name, _, raw = part.partition("=")
        fields[name.strip().lower()] = raw.strip().strip('"')
    return fields


@dataclass
class DigestAuth:
    realm: str
    username: str
    password: str
    key: bytes = b""

    def __post_init__(self) -> None:
        self.key = self.key or secrets.token_bytes(32)

    def _nonce(self, issued: int) -> str:
        stamp = f"{issued:x}"
        return f"{stamp}.{hmac.new(self.key, stamp.encode(), hashlib.sha256).hexdigest()[:32]}"

    def challenges(self, *, stale: bool = False) -> list[str]:
        """``WWW-Authenticate`` values, the preferred algorithm first (RFC 8760)."""
        nonce = self._nonce(int(time.time()))
        flag = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={name}, qop="auth"{flag}'
            for name in ALGORITHMS
        ]

    def _nonce_state(self, nonce: str) -> str:
        stamp, _, _ = nonce.partition(".")
        try:
            issued = int(stamp, 16)
        except ValueError:
            return "bad"
        if not hmac.compare_digest(self._nonce(issued), nonce):
            return "bad"
        return "fresh" if 0 <= time.time() - issued <= NONCE_TTL_S else "stale"

    def check(self, method: str, uri: str, header: str | None) -> Verdict | str:
        """ALLOW, CHALLENGE, or "stale" (challenge again with stale=true)."""
        fields = parse_digest(header or "")
        algorithm = fields.get("algorithm", "MD5").upper()
        if not fields or algorithm not in ALGORITHMS or fields.get("realm") != self.realm:
            return Verdict.CHALLENGE
        if fields.get("uri") != uri or not hmac.compare_digest(fields.get("username", ""), self.username):
            return Verdict.CHALLENGE
        state = self._nonce_state(fields.get("nonce", ""))
        if state == "bad":
            return Verdict.CHALLENGE
        digest = ALGORITHMS[algorithm]
        h = lambda text: digest(text.encode()).hexdigest()  # noqa: E731
        ha1 = h(f"{self.username}:{self.realm}:{self.password}")
        ha2 = h(f"{method}:{uri}")
        qop = fields.get("qop")
        if qop == "auth":
            expected = h(
                f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:auth:{ha2}"
            )
        elif qop is None:
            expected = h(f"{ha1}:{fields['nonce']}:{ha2}")
        else:
            return Verdict.CHALLENGE
        if not hmac.compare_digest(expected, fields.get("response", "").lower()):
            return Verdict.CHALLENGE
        return Verdict.ALLOW if state == "fresh" else "stale"


class Authorizer:
    """The allow-list first, then digest (when configured), else refuse."""

    def __init__(self, allow: PeerAllowList, digest: DigestAuth | None) -> None:
        self.allow = allow
        self.digest = digest

    def check(self, peer_ip: str, method: str, uri: str, authorization: str | None) -> Verdict | str:
        if self.allow.allows(peer_ip):
            return Verdict.ALLOW
        if self.digest is None:
            return Verdict.FORBID
        return self.digest.check(method, uri, authorization)
