"""A replica dies mid-session: the escalation stays claimable on the other replica, which shows the
patient's live session as lost; the patient's page reconnects to the other replica, which resumes
the interview with what it knew, and the console shows the patient connected again.

Everything real: two server processes (``python -m tools.loopback_server``, the product with aioice
on loopback) sharing one ``redis-server``, a patient peer (aiortc) speaking synthesised words, and
the clinician console's HTTP API. The first replica is killed with SIGKILL (no clean-up of its own).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import RedisServer
from tests.web.test_auth import PASSWORD, password_hash
from tools.capacity import server_env, wait_until_up
from tools.soak import SpeechTrack
from tools.webrtc_patient_client import PatientPeer, free_port, loopback_ice, patient_speech
from web.shared import RedisStore

pytestmark = pytest.mark.slow
SECRET = "one key shared by both replicas, long enough"
REGISTRY_TTL_S = 3.0


class Replica:
    def __init__(self, name: str, folder: Path, redis_url: str) -> None:
        self.name, self.port = name, free_port()
        home = folder / name
        home.mkdir()
        account = {"username": "ada", "display_name": "Dr Ada Lovelace", "password_hash": password_hash()}
        env = {
            **server_env(2, self.port, home),
            "REDIS_URL": redis_url,
            "SECRET_KEY": SECRET,
            "REPLICA_ID": name,
            "SESSIONS__REGISTRY_TTL_S": str(REGISTRY_TTL_S),
            "CLINICIAN__ACCOUNTS": json.dumps([account]),
        }
        self.log = home / "server.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tools.loopback_server"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
async def replicas(tmp_path: Path, own_redis: RedisServer) -> AsyncIterator[tuple[Replica, Replica]]:
    pair = (Replica("replica-a", tmp_path, own_redis.url), Replica("replica-b", tmp_path, own_redis.url))
    try:
        for replica in pair:
            async with httpx.AsyncClient(base_url=replica.url, timeout=30) as client:
                await wait_until_up(client, replica.process)
        yield pair
    finally:
        for replica in pair:
            if replica.process.poll() is None:
                replica.process.terminate()
                try:
                    replica.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    replica.kill()


async def until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.3)
    pytest.fail(f"not within {timeout_s:.0f} s: {what}")


async def signed_in_console(url: str) -> httpx.AsyncClient:
    console = httpx.AsyncClient(base_url=url, timeout=10)
    me = await console.post("/clinician/login", json={"username": "ada", "password": PASSWORD})
    assert me.status_code == 200
    console.headers["X-CSRF-Token"] = me.json()["csrf"]
    return console


async def test_the_patient_resumes_on_the_other_replica_and_the_escalation_is_never_lost(
    tmp_path: Path, own_redis: RedisServer, replicas: tuple[Replica, Replica]
) -> None:
    first, second = replicas
    said: list[str] = []

    def heard(data: dict) -> None:
        if isinstance(data.get("text"), str):
            said.append(data["text"])

    store = await RedisStore.connect(own_redis.url)
    console = await signed_in_console(second.url)  # the clinician's console is on the other replica
    try:
        with loopback_ice():
            speech = patient_speech("I have a mole on my back and it has started bleeding.", tmp_path)
            mic = SpeechTrack(speech)
            patient = PatientPeer("patient", mic, on_message=heard)
            async with httpx.AsyncClient(base_url=first.url, timeout=30) as page:
                assert (await patient.offer(page)).status_code == 200
            session_id, token = patient.session_id, patient.room_token

            async def escalation() -> dict | None:
                listed = (await console.get("/clinician/api/escalations")).json()
                return next((e for e in listed if e["session_id"] == session_id), None)

            async def kept_point() -> dict | None:
                point = await store.get(f"resume:{session_id}")
                return point if point and point["escalation_id"] else None

            raised = await until(escalation, 60, "the escalation on the other replica's console")
            assert raised["level"] == "urgent"

            async def connected() -> bool:  # held by a live replica, though not by this one
                record = await escalation()
                return record is not None and record["live"] is True

            await until(connected, 10, "the console showing the patient connected (on the other replica)")
            await until(kept_point, 10, "the session's resume point in Redis")

            first.kill()  # mid-session, without a goodbye
            await patient.close()  # the browser sees its connection fail

            async def lost() -> bool:
                record = await escalation()
                return record is not None and record["live"] is False

            await until(lost, REGISTRY_TTL_S + 10, "the console showing the live session lost")
            said.clear()
            hello = SpeechTrack(patient_speech("Hello?", tmp_path))
            back = PatientPeer("patient-again", hello, on_message=heard)
            async with httpx.AsyncClient(base_url=second.url, timeout=30) as page:
                resumed = await back.offer(page, resume=(session_id, token))
            assert resumed.status_code == 200 and back.session_id == session_id  # the same session

            async def greeted() -> str:
                return " ".join(said) if "cut off" in " ".join(said) else ""

            greeting = await until(greeted, 30, "the resumed session's greeting")
            assert "mole" in greeting.lower() and "bleeding" in greeting.lower()  # what it knew

            await until(connected, 15, "the console showing the patient connected again")
            record = await escalation()
            assert record["id"] == raised["id"]  # the same escalation, never a second one
            claim = await console.post(f"/clinician/api/escalations/{record['id']}/claim")
            assert claim.status_code == 200  # claimable on the surviving replica
            await back.close()
    finally:
        await console.aclose()
        await store.close()


async def test_a_resume_needs_the_sessions_room_token(
    replicas: tuple[Replica, Replica], tmp_path: Path
) -> None:
    _first, second = replicas
    with loopback_ice():
        peer = PatientPeer("stranger", SpeechTrack(patient_speech("Hello?", tmp_path)))
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as page:
            refused = await peer.offer(page, resume=("somebody-elses-session", "not their token"))
        await peer.close()
    assert refused.status_code == 403
