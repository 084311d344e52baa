"""Who may call: an allow-list of trunk addresses (CIDR), and/or SIP digest authentication.

A request from an allowed peer passes. Otherwise, with digest credentials configured, the
request must carry a valid ``Authorization`` (401 with a challenge if not); without them it is
refused (403).

Digest (RFC 7616): SHA-256 only, unless ``allow_md5`` is set for an old trunk (then SHA-256 is
still offered first). ``qop=auth`` is required, so every answer carries a nonce count. Nonces
cost nothing to hand out: a timestamp and random bytes signed with a per-process key, valid for
``NONCE_TTL_S``; an expired one gets a fresh challenge with ``stale=true``. Only a nonce that has
been answered correctly is remembered, with the highest nonce count used, until it expires: an
answer whose count is not higher (a captured response played again) is refused. That memory is
bounded (``MAX_TRACKED_NONCES``; the oldest is forgotten, and its nonce refused from then on).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

from media.sip.message import split_list

NONCE_TTL_S = 300.0
MAX_TRACKED_NONCES = 4096
ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}  # preferred first


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
    allow_md5: bool = False  # only for an old trunk that cannot do SHA-256
    _counts: OrderedDict[str, tuple[int, int]] = field(default_factory=OrderedDict, repr=False)
    _horizon: int = -1  # nonces issued at or before this (a forgotten one's time) are refused

    def __post_init__(self) -> None:
        self.key = self.key or secrets.token_bytes(32)

    @property
    def algorithms(self) -> list[str]:
        return [name for name in ALGORITHMS if name != "MD5" or self.allow_md5]

    def _sign(self, stamp: str) -> str:
        return hmac.new(self.key, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def _nonce(self, issued: int) -> str:
        stamp = f"{issued:x}.{secrets.token_hex(8)}"
        return f"{stamp}.{self._sign(stamp)}"

    def challenges(self, *, stale: bool = False) -> list[str]:
        """``WWW-Authenticate`` values, the preferred algorithm first (RFC 8760)."""
        nonce = self._nonce(int(time.time()))
        flag = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={name}, qop="auth"{flag}'
            for name in self.algorithms
        ]

    def _nonce_state(self, nonce: str) -> str:
        stamp, dot, signature = nonce.rpartition(".")
        issued_hex, _, _ = stamp.partition(".")
        try:
            issued = int(issued_hex, 16)
        except ValueError:
            return "bad"
        if not dot or not hmac.compare_digest(self._sign(stamp), signature):
            return "bad"
        return "fresh" if 0 <= time.time() - issued <= NONCE_TTL_S else "stale"

    def check(self, method: str, uri: str, header: str | None) -> Verdict | str:
        """ALLOW, CHALLENGE, or "stale" (challenge again with stale=true)."""
        fields = parse_digest(header or "")
        algorithm = fields.get("algorithm", "MD5").upper()  # RFC 7616: no algorithm means MD5
        if not fields or algorithm not in self.algorithms or fields.get("realm") != self.realm:
            return Verdict.CHALLENGE
        if fields.get("uri") != uri or not hmac.compare_digest(fields.get("username", ""), self.username):
            return Verdict.CHALLENGE
        nonce = fields.get("nonce", "")
        state = self._nonce_state(nonce)
        if state == "bad" or fields.get("qop") != "auth":
            return Verdict.CHALLENGE
        try:
            count = int(fields.get("nc", ""), 16)
        except ValueError:
            return Verdict.CHALLENGE
        digest = ALGORITHMS[algorithm]
        h = lambda text: digest(text.encode()).hexdigest()  # noqa: E731
        ha1 = h(f"{self.username}:{self.realm}:{self.password}")
        ha2 = h(f"{method}:{uri}")
        expected = h(f"{ha1}:{nonce}:{fields['nc']}:{fields.get('cnonce', '')}:auth:{ha2}")
        if not hmac.compare_digest(expected, fields.get("response", "").lower()):
            return Verdict.CHALLENGE
        if state != "fresh":
            self._counts.pop(nonce, None)
            return "stale"
        if not self._count_is_new(nonce, count):
            return Verdict.CHALLENGE  # a replayed answer
        return Verdict.ALLOW

    def _count_is_new(self, nonce: str, count: int) -> bool:
        """Remember ``count`` for ``nonce``; False if it is not higher than the last one used."""
        now = time.time()
        while self._counts:  # forget expired nonces, oldest first (they are refused as stale)
            oldest, (_, issued) = next(iter(self._counts.items()))
            if now - issued <= NONCE_TTL_S:
                break
            del self._counts[oldest]
        issued = int(nonce.partition(".")[0], 16)
        if nonce not in self._counts:
            if issued <= self._horizon:
                return False  # it may have been used and forgotten: ask for a fresh one
            while len(self._counts) >= MAX_TRACKED_NONCES:
                _, (_, dropped) = self._counts.popitem(last=False)
                self._horizon = max(self._horizon, dropped)
        last, _ = self._counts.get(nonce, (0, issued))
        if count <= last:
            return False
        self._counts[nonce] = (count, issued)
        return True

    @property
    def tracked_nonces(self) -> int:
        return len(self._counts)


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
