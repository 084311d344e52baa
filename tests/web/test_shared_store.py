"""The shared state's contract: the memory store and the Redis store behave the same.

Every test runs twice: against the in-memory store (one process; its "two replicas" are one
object) and against two RedisStore instances on a real ``redis-server`` the fixture starts on
loopback (two replicas, two separate connection pools). Without redis-server the Redis half is
skipped on a workstation and fails in CI (``CI=true``): scripts/test.sh installs it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from configs.settings import ConfigError, load_settings
from tests.web.conftest import RedisServer
from web.shared import MemoryStore, RedisStore, SharedStore, StoreError, open_store

WAITING = {"status": "waiting", "patient": "session-1", "findings": [], "flags": ["bleeding"]}


@pytest.fixture(scope="module")
def redis_url(shared_redis: RedisServer) -> str:
    """The module's own redis-server (``tests/web/conftest.py``)."""
    return shared_redis.url


@pytest.fixture(params=["memory", "redis"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SharedStore, SharedStore]]:
    """Two replicas' views of one shared state (memory: one process, so one object)."""
    if request.param == "memory":
        store = MemoryStore()
        yield store, store
        await store.close()
        return
    url = request.getfixturevalue("redis_url")
    namespace = f"test-{uuid.uuid4().hex}:"  # each test sees only its own keys
    first = await RedisStore.connect(url, namespace)
    second = await RedisStore.connect(url, namespace)
    yield first, second
    await first.close()
    await second.close()


async def _eventually(check: Callable[[], Awaitable[bool]], within_s: float = 5.0) -> bool:
    """Poll ``check`` until it holds or ``within_s`` has passed (expiry is not to the millisecond)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


async def test_an_escalation_record_reads_back_the_same_on_another_replica(replicas) -> None:
    here, there = replicas
    await here.put("escalation:e1", WAITING)
    assert await there.get("escalation:e1") == WAITING
    assert await there.get("escalation:never") is None

    record = await there.get("escalation:e1")
    record["status"] = "edited by the caller only"
    assert (await here.get("escalation:e1"))["status"] == "waiting"  # what was read is a copy

    assert await there.delete("escalation:e1") is True
    assert await here.get("escalation:e1") is None
    assert await here.delete("escalation:e1") is False


async def test_a_sessions_clinical_state_is_kept_for_its_ttl_and_then_gone(replicas) -> None:
    here, there = replicas
    state = {"facts": {"site": "forearm", "days": 3}, "question": 4, "escalated": False}
    await here.put("session:s1", state, ttl_s=1.0)
    await here.put("escalation:kept", WAITING)
    assert await there.get("session:s1") == state  # a reconnecting patient resumes from it

    async def expired() -> bool:
        return await there.get("session:s1") is None

    assert await _eventually(expired), "the session's state outlived its TTL"
    assert await there.get("escalation:kept") == WAITING  # no TTL: kept
    assert "session:s1" not in await there.keys("session:")


async def test_the_queue_lists_its_records_and_nothing_else(replicas) -> None:
    here, there = replicas
    for key in ("escalation:b", "escalation:a", "escalations-old:x", "session:a", "esc*[1]:z"):
        await here.put(key, WAITING)
    assert await there.keys("escalation:") == ["escalation:a", "escalation:b"]
    assert await there.keys("esc*[1]") == ["esc*[1]:z"]  # a prefix is text, not a pattern
    assert await there.keys("nothing:") == []


async def test_a_second_clinicians_claim_fails_on_either_replica(replicas) -> None:
    here, there = replicas
    rounds = 20
    for n in range(rounds):
        await here.put(f"escalation:{n}", WAITING, ttl_s=600)

    async def claim(store: SharedStore, n: int, who: str) -> bool:
        changes = {"status": "claimed", "claimed_by": who}
        return await store.compare_and_set(f"escalation:{n}", "status", "waiting", changes)

    for n in range(rounds):  # each round: four clinicians on two replicas press "claim" at once
        who = ["dr-a", "dr-b", "dr-c", "dr-d"]
        stores = [here, there, here, there]
        won = await asyncio.gather(*(claim(s, n, w) for s, w in zip(stores, who, strict=True)))
        assert sum(won) == 1, f"round {n}: {won}"
        record = await there.get(f"escalation:{n}")
        assert record["status"] == "claimed"
        assert record["claimed_by"] == who[won.index(True)]
        assert record["flags"] == ["bleeding"] and record["findings"] == []  # the rest is untouched

    assert await claim(there, 0, "dr-late") is False  # a late claim fails and changes nothing
    assert (await here.get("escalation:0"))["claimed_by"] != "dr-late"
    assert await claim(here, 999, "dr-a") is False  # no such record


async def test_a_claim_keeps_the_records_expiry(replicas) -> None:
    here, there = replicas
    await here.put("escalation:short", WAITING, ttl_s=1.0)
    assert await there.compare_and_set("escalation:short", "status", "waiting", {"status": "claimed"})

    async def expired() -> bool:
        return await here.get("escalation:short") is None

    assert await _eventually(expired), "claiming made the record outlive its TTL"


async def test_a_console_update_reaches_the_consoles_on_every_replica(replicas) -> None:
    here, there = replicas
    async with await here.subscribe("console") as near, await there.subscribe("console") as far:
        await here.subscribe("other")  # another channel's subscriber gets nothing of ours
        event = {"escalation": "e1", "status": "waiting"}
        await there.publish("console", event)
        await here.publish("console", {"escalation": "e1", "status": "claimed"})
        for subscription in (near, far):
            first = await asyncio.wait_for(subscription.next_event(), timeout=5)
            second = await asyncio.wait_for(subscription.next_event(), timeout=5)
            assert (first, second) == (event, {"escalation": "e1", "status": "claimed"})
    # Closed: iteration ends instead of waiting forever.
    assert [e async for e in near] == []


async def test_closing_the_store_ends_a_waiting_console_stream(replicas) -> None:
    here, _ = replicas
    subscription = await here.subscribe("console")
    reader = asyncio.create_task(subscription.next_event())
    await asyncio.sleep(0.1)
    await here.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(reader, timeout=5)


async def test_sign_ins_are_counted_across_replicas_until_the_window_closes(replicas) -> None:
    here, there = replicas
    hits = [await store.hit("sign-in:10.0.0.7", window_s=1.0) for store in (here, there, here)]
    assert [h.count for h in hits] == [1, 2, 3]  # the third attempt is seen whichever replica took it
    assert 0.5 < hits[-1].window_left_s <= 1.0  # what a refusal's Retry-After is made from
    hits = await asyncio.gather(*(there.hit("sign-in:10.0.0.7", window_s=1.0) for _ in range(10)))
    assert sorted(h.count for h in hits) == list(range(4, 14))  # no two concurrent attempts counted as one
    assert (await here.hit("sign-in:10.0.0.8", window_s=1.0)).count == 1  # another address

    await asyncio.sleep(1.1)
    assert (await here.hit("sign-in:10.0.0.7", window_s=1.0)).count == 1  # a new window starts over


async def test_a_signed_out_token_is_refused_everywhere_until_it_would_expire(replicas) -> None:
    here, there = replicas
    await here.revoke("clinician-token", "jti-1", until=time.time() + 1.0)
    assert await there.is_revoked("clinician-token", "jti-1") is True
    assert await there.is_revoked("clinician-token", "jti-2") is False
    assert await there.is_revoked("patient-token", "jti-1") is False

    await here.revoke("clinician-token", "jti-old", until=time.time() - 1)  # expired anyway
    assert await there.is_revoked("clinician-token", "jti-old") is False

    async def lapsed() -> bool:
        return not await there.is_revoked("clinician-token", "jti-1")

    assert await _eventually(lapsed), "a revocation outlived the token's expiry"


async def test_a_replica_that_stops_heartbeating_loses_its_sessions(replicas) -> None:
    here, there = replicas
    await here.register_session("s1", "replica-a", ttl_s=1.0)
    await here.register_session("s2", "replica-a", ttl_s=1.0)
    await there.register_session("s3", "replica-b", ttl_s=5.0)
    assert (await there.owner_of("s1"), await here.owner_of("s3")) == ("replica-a", "replica-b")
    assert await there.owner_of("never") is None

    async def a_is_gone() -> bool:
        await there.heartbeat("replica-b", ttl_s=5.0)  # b keeps beating, a has died
        return await there.owner_of("s1") is None

    assert await _eventually(a_is_gone), "a dead replica still owns its sessions"
    assert await there.owner_of("s2") is None
    assert await there.owner_of("s3") == "replica-b"
    assert await there.sessions_of("replica-a") == ["s1", "s2"]  # found, to be taken over

    await there.register_session("s1", "replica-b", ttl_s=5)  # the patient reconnected to b
    assert await here.owner_of("s1") == "replica-b"
    assert await here.sessions_of("replica-a") == ["s2"]
    assert await here.sessions_of("replica-b") == ["s1", "s3"]

    await here.unregister_session("s3")  # that consultation ended
    assert await there.owner_of("s3") is None
    assert await there.sessions_of("replica-b") == ["s1"]


async def test_a_patients_photo_is_kept_as_bytes_beside_its_record(replicas) -> None:
    here, there = replicas
    photo = bytes(range(256)) * 4096  # 1 MiB, every byte value, NULs included
    await here.put_bytes("escalation:e1", photo)
    await here.put("escalation:e1", WAITING)
    assert await there.get_bytes("escalation:e1") == photo
    assert await there.get("escalation:e1") == WAITING  # its own key space: the record is intact
    assert await there.get_bytes("escalation:none") is None

    await here.put_bytes("upload:tmp", b"\xff\xd8\xff", ttl_s=0.3)

    async def expired() -> bool:
        return await there.get_bytes("upload:tmp") is None

    assert await _eventually(expired)
    assert await there.delete_bytes("escalation:e1") is True
    assert await here.get_bytes("escalation:e1") is None
    assert await here.get("escalation:e1") == WAITING


async def test_without_redis_url_the_service_needs_no_redis() -> None:
    store = await open_store(load_settings(redis_url=""))  # REDIS_URL= in .env: unset
    assert isinstance(store, MemoryStore)
    await store.close()


async def test_redis_url_makes_replicas_share_state(redis_url: str) -> None:
    first = await open_store(load_settings(redis_url=redis_url))
    second = await open_store(load_settings(redis_url=redis_url))
    try:
        assert isinstance(first, RedisStore)
        key = f"escalation:{uuid.uuid4().hex}"
        await first.put(key, WAITING)
        assert await second.get(key) == WAITING
        await first.delete(key)
    finally:
        await first.close()
        await second.close()


def test_a_redis_url_that_is_not_redis_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match=r"REDIS_URL must start with redis://.*not http://"):
        load_settings(redis_url="http://user:hunter2@cache:6379")


async def test_an_unreachable_redis_fails_at_start_up_without_showing_its_password(
    unused_tcp_port: int,
) -> None:
    url = f"redis://:hunter2@127.0.0.1:{unused_tcp_port}/0"  # nothing listens there
    with pytest.raises(StoreError, match="REDIS_URL: Redis does not answer") as raised:
        await open_store(load_settings(redis_url=url))
    assert "hunter2" not in str(raised.value)
