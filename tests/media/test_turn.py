"""TURN credentials minted per session (media/turn.py), checked by a real coturn on loopback.

A relay that refuses the credentials the server hands out would leave every patient behind a
strict network without a connection; one that accepts an expired or forged one would relay for
anybody. Both are asked of coturn itself (``use-auth-secret``), through aioice's TURN client.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from configs.settings import ConfigError, TurnSettings, load_settings
from media.turn import IceServer, ice_servers, page_ice_config, turn_credential
from tests.web.turn_server import Coturn, coturn

NOW = 1_800_000_000.0
ALLOCATE_S = 5.0


def turn_settings(urls: list[str], secret: str | None, **more: object) -> TurnSettings:
    return TurnSettings.model_validate({"urls": urls, "shared_secret": secret, **more})


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    with coturn(tmp_path_factory.mktemp("coturn")) as server:
        yield server


async def allocate(server: Coturn, username: str, password: str) -> tuple[str, int]:
    """Ask the relay for an allocation; its relayed address, or ``stun.TransactionFailed``."""
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=("127.0.0.1", server.port),
            username=username,
            password=password,
        ),
        ALLOCATE_S,
    )
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()
        await asyncio.sleep(0.05)  # the release goes out before the loop ends


# --- minting ------------------------------------------------------------------------------


def test_a_credential_is_coturns_rest_api_format() -> None:
    username, password = turn_credential("north", "abc", 1_800_003_600)
    assert username == "1800003600:abc"
    expected = hmac.new(b"north", b"1800003600:abc", hashlib.sha1).digest()
    assert base64.b64decode(password) == expected
    assert password == "tw0R4uO2jyJig/Dc3SmfjK3CVCE="  # pinned: a change here locks every relay out
    with pytest.raises(ValueError, match="':'"):
        turn_credential("north", "a:b", 1)


def test_each_session_gets_a_credential_that_expires_after_the_ttl() -> None:
    settings = turn_settings(["turn:turn.example.org:3478?transport=udp"], "north", ttl_s=600)
    [server] = ice_servers(settings, tag="session1", clock=lambda: NOW)
    assert server.urls == ("turn:turn.example.org:3478?transport=udp",)
    assert server.username == f"{int(NOW) + 600}:session1"
    assert server.credential == turn_credential("north", "session1", int(NOW) + 600)[1]
    # Without a session id yet (the page asks before its offer) the tag is random, never shared.
    first, second = (ice_servers(settings, clock=lambda: NOW)[0] for _ in range(2))
    assert first.username != second.username
    assert first.username is not None and first.username.startswith(f"{int(NOW) + 600}:")


def test_without_turn_there_are_no_ice_servers_and_the_page_gathers_as_before() -> None:
    nothing = TurnSettings()
    assert ice_servers(nothing) == []
    assert page_ice_config(nothing, []) == {"iceServers": [], "iceTransportPolicy": "all"}
    stun_only = TurnSettings(stun_urls=["stun:stun.example.org:3478"])
    assert ice_servers(stun_only) == [IceServer(urls=("stun:stun.example.org:3478",))]
    assert ice_servers(stun_only)[0].for_page() == {"urls": ["stun:stun.example.org:3478"]}


def test_relay_only_is_told_to_the_page_with_the_credentials() -> None:
    settings = turn_settings(["turn:127.0.0.1:3478"], "north", relay_only=True)
    config = page_ice_config(settings, ice_servers(settings, tag="s", clock=lambda: NOW))
    assert config["iceTransportPolicy"] == "relay"
    assert config["iceServers"] == [
        {
            "urls": ["turn:127.0.0.1:3478"],
            "username": f"{int(NOW) + 3600}:s",
            "credential": turn_credential("north", "s", int(NOW) + 3600)[1],
        }
    ]
    rtc = ice_servers(settings, tag="s", clock=lambda: NOW)[0].for_server()
    assert rtc.urls == ["turn:127.0.0.1:3478"] and rtc.username == f"{int(NOW) + 3600}:s"


# --- settings -----------------------------------------------------------------------------


def test_turn_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TURN__URLS", '["turn:turn.example.org:3478?transport=udp"]')
    monkeypatch.setenv("TURN__SHARED_SECRET", "north")
    monkeypatch.setenv("TURN__TTL_S", "900")
    monkeypatch.setenv("TURN__RELAY_ONLY", "true")
    turn = load_settings().turn
    assert turn.urls == ["turn:turn.example.org:3478?transport=udp"]
    assert turn.shared_secret is not None and turn.shared_secret.get_secret_value() == "north"
    assert "north" not in repr(turn)  # a secret, never printed
    assert turn.ttl_s == 900 and turn.relay_only


@pytest.mark.parametrize(
    ("turn", "says"),
    [
        ({"urls": ["turn:relay:3478"]}, "TURN__URLS needs TURN__SHARED_SECRET"),
        ({"urls": ["http://relay:3478"], "shared_secret": "s"}, "TURN__URLS must list turn: or turns:"),
        ({"stun_urls": ["turn:relay:3478"]}, "TURN__STUN_URLS must list stun: or stuns:"),
        ({"urls": ["turn:relay"], "shared_secret": "s", "ttl_s": 5}, "TURN__TTL_S must be at least 60"),
        (
            {"urls": ["turn:relay"], "shared_secret": "s", "ttl_s": 3 * 86400},
            "TURN__TTL_S must be more than 0",
        ),
        ({"relay_only": True}, "TURN__RELAY_ONLY needs TURN__URLS"),
    ],
)
def test_a_turn_setting_that_cannot_work_is_refused_at_start_up(turn: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_settings(turn=turn)


# --- a real coturn ------------------------------------------------------------------------


async def test_coturn_relays_for_a_freshly_minted_credential(relay: Coturn) -> None:
    settings = turn_settings([relay.url], relay.secret)
    [server] = ice_servers(settings, tag="session1")
    assert server.username is not None and server.credential is not None
    host, port = await allocate(relay, server.username, server.credential)
    assert host == "127.0.0.1" and port > 0  # a relayed address: the patient can be reached through it


async def test_coturn_refuses_an_expired_credential(relay: Coturn) -> None:
    settings = turn_settings([relay.url], relay.secret, ttl_s=60)
    [server] = ice_servers(settings, tag="session1", clock=lambda: time.time() - 3600)  # expired 59 min ago
    assert server.username is not None and server.credential is not None
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocate(relay, server.username, server.credential)
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401


async def test_coturn_refuses_a_credential_minted_with_another_secret(relay: Coturn) -> None:
    settings = turn_settings([relay.url], "not-the-clinics-secret")
    [server] = ice_servers(settings, tag="session1")
    assert server.username is not None and server.credential is not None
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocate(relay, server.username, server.credential)
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401
