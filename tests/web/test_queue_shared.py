"""The clinician queue shared by replicas (issue 13): what one replica does, every console sees.

Two ``EscalationQueue`` replicas, each with its own escalation files (its own disk), share one
store: a real ``redis-server`` the test starts on loopback (two connection pools, as two
processes would have), and the in-memory store (the embedded default, one process). A clinician
notices: an escalation raised on one replica appears live on a console of the other, a second
clinician's claim fails whichever replica it reaches and names the first, moves show everywhere,
and with Redis gone an escalation is still never lost.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.escalation import EscalationRecord, EscalationStore
from agent.policy import Urgency
from tests.web.conftest import RedisServer
from web.queue import AlreadyClaimed, ChangeKind, EscalationQueue, QueueChange, QueueError, Subscription
from web.shared import MemoryStore, RedisStore, SharedStore

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"  # stands in for the camera frame


def escalation(session_id: str = "sess1") -> EscalationRecord:
    return EscalationRecord.create(
        session_id=session_id,
        level=Urgency.URGENT,
        reasons=["Spreading redness with fever"],
        rule_ids=["cellulitis_fever"],
        summary="Red, warm patch on the shin for two days, with fever.",
        transcript=[("agent", "What brings you in?"), ("patient", "My leg is red and hot.")],
        best_frame_jpeg_b64=base64.b64encode(JPEG).decode(),
    )


async def eventually(check: Callable[[], bool], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


async def next_change(changes: Subscription, within_s: float = 5.0) -> QueueChange:
    async with asyncio.timeout(within_s):
        return await anext(changes)


class Replicas:
    """Two replicas of the queue over one shared state, and the stores under them."""

    def __init__(self, tmp_path: Path, stores: tuple[SharedStore, SharedStore], **options: float) -> None:
        self.stores = stores
        self.files = (EscalationStore(tmp_path / "a"), EscalationStore(tmp_path / "b"))
        self.a = EscalationQueue(self.files[0], **options)
        self.b = EscalationQueue(self.files[1], **options)

    async def __aenter__(self) -> Replicas:
        await self.a.share(self.stores[0])
        await self.b.share(self.stores[1])
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.a.close()
        await self.b.close()


@pytest.fixture(params=["memory", "redis"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SharedStore, SharedStore]]:
    """Two replicas' views of one shared state (memory: one process, so one object)."""
    if request.param == "memory":
        store = MemoryStore()
        yield store, store
        await store.close()
        return
    server: RedisServer = request.getfixturevalue("shared_redis")
    namespace = f"test-{uuid.uuid4().hex}:"  # each test sees only its own keys
    first = await RedisStore.connect(server.url, namespace)
    second = await RedisStore.connect(server.url, namespace)
    yield first, second
    await first.close()
    await second.close()


async def test_an_escalation_raised_on_one_replica_appears_live_on_the_other(stores, tmp_path: Path) -> None:
    async with Replicas(tmp_path, stores) as replicas:
        console_b = replicas.b.subscribe()
        record = escalation()

        await replicas.a.add(record)

        change = await next_change(console_b)
        assert change.kind == ChangeKind.ADDED and change.record.id == record.id
        seen = replicas.b.get(record.id)
        assert seen.summary == record.summary and seen.transcript == record.transcript
        assert base64.b64decode(seen.best_frame_jpeg_b64) == JPEG  # the photo too
        assert [r.id for r in replicas.b.list()] == [record.id]
        assert replicas.b.for_session("sess1").id == record.id
        # The photo is a key of its own: the record that is listed and claimed does not carry it.
        assert await stores[1].get_bytes(f"escalation:{record.id}") == JPEG
        assert "best_frame_jpeg_b64" not in await stores[1].get(f"escalation:{record.id}")
        await replicas.a.flush()
        assert replicas.files[0].load(record.id).status == "waiting"  # the raising replica's file


async def test_a_second_clinicians_claim_fails_on_the_other_replica_and_names_the_first(
    stores, tmp_path: Path
) -> None:
    async with Replicas(tmp_path, stores) as replicas:
        record = escalation()
        await replicas.a.add(record)
        assert await eventually(lambda: replicas.b.get(record.id) is not None)

        claimed = await replicas.b.claim(record.id, "grace")
        assert claimed.clinician == "grace"
        with pytest.raises(AlreadyClaimed) as lost:
            await replicas.a.claim(record.id, "ada")  # whatever A's copy said at that moment

        assert lost.value.claimed_by == "grace"
        assert await eventually(lambda: replicas.a.get(record.id).clinician == "grace")
        assert replicas.a.get(record.id).status == "claimed"
        assert [e["event"] for e in replicas.a.get(record.id).events] == ["claimed"]


async def test_clinicians_claiming_at_once_on_two_replicas_exactly_one_wins(stores, tmp_path: Path) -> None:
    async with Replicas(tmp_path, stores) as replicas:
        records = [escalation(f"s{i}") for i in range(8)]
        for record in records:
            await replicas.a.add(record)
        assert await eventually(lambda: len(replicas.b.list()) == len(records))

        for record in records:
            results = await asyncio.gather(
                replicas.a.claim(record.id, "ada"),
                replicas.b.claim(record.id, "grace"),
                return_exceptions=True,
            )
            won = [r for r in results if isinstance(r, EscalationRecord)]
            lost = [r for r in results if isinstance(r, AlreadyClaimed)]
            assert len(won) == 1 and len(lost) == 1, results
            assert lost[0].claimed_by == won[0].clinician
            winner = won[0].clinician
            for replica in (replicas.a, replicas.b):  # both consoles agree on who has it
                assert await eventually(lambda r=replica, i=record.id, w=winner: r.get(i).clinician == w)
                assert [e["event"] for e in replica.get(record.id).events] == ["claimed"]


async def test_every_move_on_one_replica_shows_live_on_the_other(stores, tmp_path: Path) -> None:
    async with Replicas(tmp_path, stores) as replicas:
        console_a = replicas.a.subscribe()
        record = escalation()
        await replicas.a.add(record)
        assert (await next_change(console_a)).kind == ChangeKind.ADDED
        assert await eventually(lambda: replicas.b.get(record.id) is not None)

        await replicas.b.claim(record.id, "grace")
        await replicas.b.mark_joined(record.id, "grace")
        await replicas.b.hand_back(record.id, "grace")
        await replicas.b.end(record.id, "grace", "referred")

        seen = [
            (c.kind, c.record.status, c.record.clinician)
            for c in [await next_change(console_a) for _ in range(4)]
        ]
        assert seen == [
            ("claimed", "claimed", "grace"),
            ("joined", "joined", "grace"),
            ("handed_back", "handed_back", "grace"),
            ("ended", "ended", "grace"),
        ]
        assert replicas.a.get(record.id).events[-1]["outcome"] == "referred"
        await replicas.b.flush()
        assert replicas.files[1].load(record.id).status == "ended"  # written by the replica that moved it

        await replicas.a.reopen(record.id)  # the patient asks again, on the first replica
        assert await eventually(lambda: replicas.b.get(record.id).status == "waiting")
        assert (await replicas.b.claim(record.id, "ada")).clinician == "ada"


async def test_a_claim_expiring_on_one_replica_does_not_undo_a_join_on_the_other(
    stores, tmp_path: Path
) -> None:
    timeout_s = 0.5
    async with Replicas(tmp_path, stores, claim_timeout_s=timeout_s) as replicas:
        joined, left = escalation("joined"), escalation("left")
        for record in (joined, left):
            await replicas.a.add(record)
            await replicas.a.claim(record.id, "ada")  # A runs the claim's timer
        assert await eventually(lambda: replicas.b.get(left.id) is not None)
        assert await eventually(lambda: replicas.b.get(joined.id).status == "claimed")

        await asyncio.sleep(timeout_s * 0.8)
        await replicas.b.mark_joined(joined.id, "ada")  # Ada's console is served by B
        await asyncio.sleep(timeout_s * 2)

        for replica in (replicas.a, replicas.b):
            assert replica.get(joined.id).status == "joined" and replica.get(joined.id).clinician == "ada"
            assert "claim_expired" not in [e["event"] for e in replica.get(joined.id).events]
            # The claim nobody followed with a join did lapse, and every replica shows it free.
            assert await eventually(lambda r=replica: r.get(left.id).status == "waiting")
            assert [e["event"] for e in replica.get(left.id).events] == ["claimed", "claim_expired"]


async def test_a_replica_starting_later_shows_the_live_queue_and_the_escalations_only_on_its_disk(
    stores, tmp_path: Path
) -> None:
    replicas = Replicas(tmp_path, stores)
    await replicas.a.share(stores[0])
    live = escalation("live")
    await replicas.a.add(live)
    await replicas.a.claim(live.id, "ada")
    from_before = escalation("before")  # waiting in B's files from its last run
    replicas.files[1].save(from_before)
    late = EscalationQueue(replicas.files[1])

    await late.share(stores[1])

    assert late.get(live.id).status == "claimed" and late.get(live.id).clinician == "ada"
    assert base64.b64decode(late.get(live.id).best_frame_jpeg_b64) == JPEG
    assert await eventually(lambda: replicas.a.get(from_before.id) is not None)  # now on every console
    await replicas.a.close()
    await late.close()


async def test_an_ended_escalation_leaves_every_replica_and_the_store_after_the_grace(
    stores, tmp_path: Path
) -> None:
    async with Replicas(tmp_path, stores, ended_grace_s=0.2) as replicas:
        record = escalation()
        await replicas.a.add(record)
        await replicas.a.claim(record.id, "ada")
        await replicas.a.end(record.id, "ada")
        assert await eventually(lambda: replicas.b.get(record.id) is not None)

        assert await eventually(
            lambda: replicas.a.get(record.id) is None and replicas.b.get(record.id) is None
        )
        await asyncio.sleep(0.1)
        assert await stores[0].get(f"escalation:{record.id}") is None
        assert await stores[0].get_bytes(f"escalation:{record.id}") is None
        await replicas.a.flush()
        assert replicas.files[0].load(record.id).status == "ended"  # on disk until the retention purge


async def test_with_redis_gone_an_escalation_is_kept_and_shared_once_redis_is_back(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    first = await RedisStore.connect(own_redis.url)
    second = await RedisStore.connect(own_redis.url)
    options = {"shared_timeout_s": 1.0, "shared_retry_s": 0.2}
    async with Replicas(tmp_path, (first, second), **options) as replicas:
        before = escalation("before")
        await replicas.a.add(before)
        assert await eventually(lambda: replicas.b.get(before.id) is not None)
        console_a = replicas.a.subscribe()

        own_redis.stop()
        record = escalation("during")
        await replicas.a.add(record)  # a red flag while Redis is down: not refused, not dropped

        assert (await next_change(console_a)).record.id == record.id  # this replica's consoles see it
        assert replicas.a.get(record.id).status == "waiting"
        await replicas.a.flush()
        assert replicas.files[0].load(record.id).summary == record.summary  # and it is on disk
        status = replicas.a.storage_status()
        assert status["storage"] == "failing" and status["shared"] == "failing"  # /health: degraded
        assert status["unshared"] == 1
        assert "leg" not in json.dumps(status)
        with pytest.raises(QueueError, match="cannot be reached"):
            await replicas.a.claim(record.id, "ada")  # refused, not half made
        assert replicas.a.get(record.id).status == "waiting"

        own_redis.start()  # back, on the same port, and empty
        assert await eventually(lambda: replicas.b.get(record.id) is not None, within_s=15)
        assert await eventually(lambda: replicas.a.storage_status()["storage"] == "ok", within_s=15)
        assert (await replicas.b.claim(record.id, "grace")).clinician == "grace"
        assert await eventually(lambda: replicas.a.get(record.id).clinician == "grace")
        # What Redis lost when it restarted comes back from the replicas that hold it.
        assert await eventually(lambda: replicas.a.get(before.id) is not None)
        assert (await replicas.a.claim(before.id, "ada")).clinician == "ada"
    await first.close()
    await second.close()


async def test_a_hung_redis_does_not_hold_up_the_session_raising_an_escalation(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    first = await RedisStore.connect(own_redis.url)
    second = await RedisStore.connect(own_redis.url)
    options = {"shared_timeout_s": 0.5, "shared_retry_s": 0.2}
    async with Replicas(tmp_path, (first, second), **options) as replicas:
        assert own_redis.process is not None
        own_redis.process.send_signal(signal.SIGSTOP)  # Redis hangs: connections open, no answers
        try:
            record = escalation()
            started = time.monotonic()
            await replicas.a.add(record)
            took = time.monotonic() - started

            assert took < 2.0  # the session goes on after the store's time, not the store's hang
            assert replicas.a.get(record.id).status == "waiting"
            assert replicas.a.storage_status()["storage"] == "failing"
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
        assert await eventually(lambda: replicas.b.get(record.id) is not None, within_s=15)
        assert await eventually(lambda: replicas.a.storage_status()["storage"] == "ok", within_s=15)
    await first.close()
    await second.close()


async def test_one_replica_over_the_memory_store_behaves_as_the_queue_always_did(tmp_path: Path) -> None:
    """The embedded default (no Redis): one queue, shared through the memory store."""
    shared = MemoryStore()
    files = EscalationStore(tmp_path / "escalations")
    queue = EscalationQueue(files, claim_timeout_s=0.1)
    await queue.share(shared)
    changes = queue.subscribe()
    record = escalation()

    await queue.add(record)
    results = await asyncio.gather(
        queue.claim(record.id, "ada"), queue.claim(record.id, "grace"), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["AlreadyClaimed", "EscalationRecord"]
    winner = queue.get(record.id).clinician
    await asyncio.sleep(0.3)  # no join: the claim lapses
    assert queue.get(record.id).status == "waiting" and queue.get(record.id).clinician is None
    await queue.claim(record.id, "grace")
    await queue.mark_joined(record.id, "grace")
    await queue.end(record.id, "grace", "completed")
    await queue.close()

    kinds = [(c.kind, c.record.clinician) async for c in changes]
    assert kinds == [
        ("added", None),
        ("claimed", winner),
        ("claim_expired", None),
        ("claimed", "grace"),
        ("joined", "grace"),
        ("ended", "grace"),
    ]
    assert files.load(record.id).status == "ended"
    await shared.close()
