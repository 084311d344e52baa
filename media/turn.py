"""ICE servers for one session: STUN and TURN URLs, with TURN credentials minted here.

A browser on another network (a phone on mobile data, a clinic behind a strict firewall) can
only reach this host through a TURN relay. The relay (coturn, ``use-auth-secret``) and this
server share one secret and nothing else: for each session the server mints a username
``"<expiry unix time>:<tag>"`` and a password ``base64(HMAC-SHA1(secret, username))`` (the
TURN REST API, as coturn checks it). The relay refuses them once the expiry has passed, so a
credential copied out of a page is useless after ``TURN__TTL_S``, and no account per patient
has to exist anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCIceServer

from configs.settings import TurnSettings

__all__ = ["IceServer", "ice_servers", "page_ice_config", "turn_credential"]


@dataclass(frozen=True)
class IceServer:
    """One entry of a WebRTC ``iceServers`` list: STUN URLs alone, TURN URLs with credentials."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def for_page(self) -> dict[str, Any]:
        """The browser's ``RTCIceServer`` dictionary."""
        entry: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            entry |= {"username": self.username, "credential": self.credential}
        return entry

    def for_server(self) -> RTCIceServer:
        """aiortc's ``RTCIceServer`` (pipecat's ``IceServer``), for this server's own peer connection."""
        return RTCIceServer(urls=list(self.urls), username=self.username, credential=self.credential)


def turn_credential(secret: str, tag: str, expires_at: int) -> tuple[str, str]:
    """The TURN REST API's (username, password): valid until ``expires_at`` (unix seconds).

    coturn splits the username at its first ``:``, so the tag must not hold one.
    """
    if ":" in tag:
        raise ValueError("a TURN username tag cannot contain ':'")
    username = f"{expires_at}:{tag}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(
    settings: TurnSettings, *, tag: str | None = None, clock: Callable[[], float] = time.time
) -> list[IceServer]:
    """The ICE servers of one session: ``[]`` when no TURN or STUN is configured (LAN only).

    ``tag`` names what the credential is for (a session id; random when there is none yet) in
    the relay's own logs; it carries nothing about the patient.
    """
    servers = [IceServer(urls=tuple(settings.stun_urls))] if settings.stun_urls else []
    if settings.urls and settings.shared_secret is not None:
        expires_at = int(clock()) + settings.ttl_s
        username, password = turn_credential(
            settings.shared_secret.get_secret_value(), tag or secrets.token_hex(8), expires_at
        )
        servers.append(IceServer(urls=tuple(settings.urls), username=username, credential=password))
    return servers


def page_ice_config(settings: TurnSettings, servers: list[IceServer]) -> dict[str, Any]:
    """What a page gives ``new RTCPeerConnection(...)``: its servers, and relay-only if configured."""
    return {
        "iceServers": [server.for_page() for server in servers],
        "iceTransportPolicy": "relay" if settings.relay_only else "all",
    }
