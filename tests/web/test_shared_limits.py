"""Rate limits and sign-outs hold across replicas (a real redis-server), and survive Redis failing.

Two replicas are two apps (or two ``Auth``) with their own folders, sharing one Redis: what one
counted or signed out, the other sees. With Redis gone, each still limits and refuses on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.web.conftest import RedisServer
from tests.web.test_auth import FAST_HASHER, PASSWORD, make_settings
from web.app import create_app
from web.auth import Auth
from web.shared import RedisStore

BAD_OFFER = b"not json"  # counted by the limit, refused with 400 after it: no WebRTC set-up needed


def replica_settings(tmp_path: Path, name: str, redis_url: str, offers_per_minute: int = 2):
    settings = make_settings(
        tmp_path / name, redis_url=redis_url, vector_store_dir=tmp_path / name / "chroma"
    )
    return settings.model_copy(
        update={"sessions": settings.sessions.model_copy(update={"offers_per_minute": offers_per_minute})}
    )


def test_offers_from_one_address_are_counted_on_every_replica(tmp_path: Path, own_redis: RedisServer) -> None:
    one = create_app(replica_settings(tmp_path, "one", own_redis.url))
    two = create_app(replica_settings(tmp_path, "two", own_redis.url))
    with TestClient(one) as first, TestClient(two) as second:
        statuses = [
            first.post("/api/offer", content=BAD_OFFER).status_code,
            second.post("/api/offer", content=BAD_OFFER).status_code,
            first.post("/api/offer", content=BAD_OFFER).status_code,
        ]
        refused = second.post("/api/offer", content=BAD_OFFER)
    assert statuses == [400, 400, 429]  # the third offer is over the limit, whichever replica took it
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60


def test_with_redis_gone_each_replica_still_limits_on_its_own(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    with TestClient(create_app(replica_settings(tmp_path, "one", own_redis.url))) as client:
        own_redis.stop()
        statuses = [client.post("/api/offer", content=BAD_OFFER).status_code for _ in range(3)]
        own_redis.start()  # for the app's shutdown
    assert statuses == [400, 400, 429]  # patients are neither all refused nor let through unlimited


@pytest.fixture
async def two_replicas(tmp_path: Path, own_redis: RedisServer) -> AsyncIterator[tuple[Auth, Auth]]:
    """Two replicas' sign-ins: their own folders (revocation files), one Redis."""
    here = Auth(make_settings(tmp_path / "here"), hasher=FAST_HASHER)
    there = Auth(make_settings(tmp_path / "there"), hasher=FAST_HASHER)
    stores = [await RedisStore.connect(own_redis.url) for _ in range(2)]
    here.share(stores[0])
    there.share(stores[1])
    try:
        yield here, there
    finally:
        for store in stores:
            await store.close()


async def test_a_sign_out_on_one_replica_is_refused_on_the_other(two_replicas: tuple[Auth, Auth]) -> None:
    here, there = two_replicas
    cookie = here.issue_session(here.authenticate("ada", PASSWORD))
    assert await there.signed_in(cookie) is not None  # one key: any replica reads the cookie

    await here.sign_out(cookie)
    assert await here.signed_in(cookie) is None
    assert await there.signed_in(cookie) is None  # its own revocations file never heard of it


async def test_a_sign_out_while_redis_is_down_reaches_the_other_replicas_once_it_is_back(
    two_replicas: tuple[Auth, Auth], own_redis: RedisServer
) -> None:
    here, there = two_replicas
    cookie = here.issue_session(here.authenticate("ada", PASSWORD))
    kept = here.issue_session(here.authenticate("ada", PASSWORD))  # another tab, still signed in
    own_redis.stop()
    await here.sign_out(cookie)  # Redis is down: signed out here at least
    assert await here.signed_in(cookie) is None
    assert await there.signed_in(kept) is not None  # the console keeps working without Redis

    own_redis.start()  # back, and empty
    assert await here.signed_in(kept) is not None  # the next request tells Redis what it missed
    assert await there.signed_in(cookie) is None


def test_behind_a_trusted_proxy_each_patient_has_their_own_limit(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    settings = replica_settings(tmp_path, "one", own_redis.url, offers_per_minute=1)
    behind_proxy = settings.model_copy(update={"forwarded_allow_ips": "*"})  # the test client is the proxy
    with TestClient(create_app(behind_proxy)) as proxy:
        first = [proxy.post("/api/offer", content=BAD_OFFER, headers={"X-Forwarded-For": "203.0.113.7"})]
        first.append(proxy.post("/api/offer", content=BAD_OFFER, headers={"X-Forwarded-For": "203.0.113.7"}))
        other = proxy.post("/api/offer", content=BAD_OFFER, headers={"X-Forwarded-For": "198.51.100.9"})
    assert [r.status_code for r in first] == [400, 429]
    assert other.status_code == 400  # another patient behind the same proxy is not refused

    with TestClient(create_app(settings)) as untrusted:  # the header from an untrusted peer is ignored
        statuses = [
            untrusted.post("/api/offer", content=BAD_OFFER, headers={"X-Forwarded-For": f"192.0.2.{n}"})
            for n in range(2)
        ]
    assert [r.status_code for r in statuses] == [400, 429]
