"""The switch to LiveKit rooms (``LIVEKIT__ENABLED``) through the app's own routes.

Without it nothing changes: no LiveKit route, sessions start from a WebRTC offer. With it, an
offer starts nothing; ``POST /api/livekit/session`` starts the agent in a new room and gives the
patient a LiveKit token for that room only (checked with LiveKit's own token verifier) and the
room token for its endpoints; a clinician's join of the escalation they claimed answers with a
clinician token for that room, and nobody else's join does. The LiveKit connection is the fake of
``tests/media/livekit_fakes.py`` (no LiveKit server can run here); the app, the session host and
the transport are real, the pipeline a pass-through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from pipecat.frames.frames import Frame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from starlette.applications import Starlette

from agent.escalation import EscalationRecord
from agent.policy import Urgency
from configs.settings import ClinicianAccount, Settings, load_settings
from media.host import SessionHost
from pipeline.session import SessionContext
from tests.media.livekit_fakes import URL, FakeRoom, claims_of, fake_livekit, livekit_config
from tests.web.test_auth import PASSWORD, password_hash
from web.app import create_app
from web.product import Product, build_product

__all__ = ["fake_livekit"]  # the fixture, used by name
BASE = "http://testserver"
OFFER = {"sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "type": "offer"}  # no audio: unreadable


class PassThrough(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class LightHost(SessionHost):
    def session_processors(self, context: SessionContext) -> list[FrameProcessor]:
        return [PassThrough()]


@dataclass
class Clinic:
    app: Starlette
    product: Product

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)


def clinic_settings(tmp_path: Path, **overrides: object) -> Settings:
    accounts = [
        ClinicianAccount(username=name, display_name=f"Dr {name.title()}", password_hash=password_hash())
        for name in ("ada", "grace")
    ]
    return load_settings(
        escalations_dir=tmp_path / "escalations",
        vector_store_dir=tmp_path / "chroma",
        secret_key="a test key that is long enough to sign things",
        clinician={
            "accounts": accounts,
            "accounts_file": tmp_path / "clinicians.json",
            "audit_log": tmp_path / "audit.log",
        },
        **overrides,
    )


@pytest.fixture
def clinic_of(tmp_path: Path) -> Callable[..., Clinic]:
    def make(**overrides: object) -> Clinic:
        settings = clinic_settings(tmp_path, **overrides)
        product = replace(build_product(settings, phone=False), host=LightHost(settings))
        return Clinic(create_app(settings, product), product)  # no lifespan: nothing to warm up

    return make


@pytest.fixture
async def clinic(clinic_of: Callable[..., Clinic], fake_livekit: None) -> AsyncIterator[Clinic]:
    clinic = clinic_of(livekit=livekit_config())
    yield clinic
    await clinic.app.state.livekit_rooms.close()


async def until(condition: Callable[[], bool], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def sign_in(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await client.post("/clinician/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrf"]}


def escalation(session_id: str) -> EscalationRecord:
    return EscalationRecord.create(
        session_id=session_id,
        level=Urgency.URGENT,
        reasons=["Spreading redness with fever"],
        rule_ids=["cellulitis_fever"],
        summary="Red, warm patch on the shin for two days, with fever.",
        transcript=[("patient", "My leg is red and hot.")],
    )


async def test_by_default_rooms_stay_peer_to_peer(clinic_of: Callable[..., Clinic]) -> None:
    clinic = clinic_of()
    async with clinic.client() as client:
        livekit = await client.post("/api/livekit/session", json={})
        offer = await client.post("/api/offer", json=OFFER)
    assert livekit.status_code in (404, 405)
    assert offer.status_code == 400  # the offer route reads the SDP as before (this one has no audio)
    assert clinic.app.state.livekit_rooms is None


async def test_with_livekit_a_patient_gets_a_token_for_a_new_room_where_the_agent_is(clinic: Clinic) -> None:
    async with clinic.client() as client:
        offer = await client.post("/api/offer", json=OFFER)
        started = await client.post("/api/livekit/session")
        assert started.status_code == 200, started.text
        body = started.json()
        session_id = body["session_id"]
        assert await until(lambda: clinic.app.state.livekit_rooms.is_live(session_id))
        status = await client.get(
            f"/api/room/{session_id}/status", headers={"X-Room-Token": body["room_token"]}
        )
        others = await client.get(f"/api/room/{session_id}/status", headers={"X-Room-Token": "forged"})

    assert offer.status_code == 409 and offer.json()["livekit"] == "/api/livekit/session"
    assert started.headers["X-Session-Id"] == session_id and started.headers["Cache-Control"] == "no-store"
    claims = claims_of(body["token"])
    assert body["url"] == URL and claims.identity.startswith("patient-")
    assert claims.video.room == session_id and claims.video.room_join and claims.video.can_subscribe
    assert claims.video.can_publish_sources == ["microphone", "camera"]
    assert not (claims.video.agent or claims.video.room_admin or claims.video.can_publish_data)
    assert body["expires_at"] - time.time() <= 120  # LIVEKIT__TOKEN_TTL_S
    assert status.status_code == 200 and others.status_code == 403
    # The agent joined that room as the agent, on this replica's host (the lines it counts).
    [room] = FakeRoom.rooms
    assert room.connected_to is not None and claims_of(room.connected_to[1]).video.room == session_id
    assert clinic.product.host.in_use() == 1


async def test_only_the_clinician_who_claimed_the_escalation_gets_a_token_for_its_room(
    clinic: Clinic,
) -> None:
    async with clinic.client() as patient:
        session_id = (await patient.post("/api/livekit/session")).json()["session_id"]
    assert await until(lambda: clinic.app.state.livekit_rooms.is_live(session_id))
    record = escalation(session_id)
    await clinic.product.queue.add(record)
    join = f"/clinician/api/escalations/{record.id}/join"

    async with clinic.client() as ada, clinic.client() as grace:
        ada_headers, grace_headers = await sign_in(ada, "ada"), await sign_in(grace, "grace")
        before_claim = await ada.post(join, headers=ada_headers, json={})
        claimed = await ada.post(f"/clinician/api/escalations/{record.id}/claim", headers=ada_headers)
        not_hers = await grace.post(join, headers=grace_headers, json={})
        joined = await ada.post(join, headers=ada_headers, json={})  # no SDP with LiveKit

    assert before_claim.status_code == 403 and not_hers.status_code == 403
    assert "token" not in before_claim.json() and "token" not in not_hers.json()
    assert claimed.status_code == 200 and joined.status_code == 200, joined.text
    access = joined.json()
    claims = claims_of(access["token"])
    assert access["url"] == URL and access["room"] == session_id
    assert claims.identity.startswith("clinician-") and claims.name == "Dr Ada"
    assert claims.video.room == session_id and claims.video.can_publish_sources == ["microphone", "camera"]
    assert not (claims.video.agent or claims.video.room_admin)
    assert clinic.product.queue.get(record.id).status == "joined"
