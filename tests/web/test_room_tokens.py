"""The patient's room token: in a header only, good for as long as the session is live, and no longer.

A patient expects the page to show whether a clinician is coming while they are in the
conversation; once it has ended (they hung up, the clinician ended it) the page stops asking, so
the token has nothing left to open. Its life is therefore the room's: no fixed expiry that could
cut a long consultation, and refused as soon as the room closes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from media.room import Room
from media.rooms import Rooms
from tests.web.test_clinician_routes import BASE, Console, build_console, room
from web.clinician import STATIC, clinician_routes


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    console = build_console(tmp_path)
    yield console
    await console.queue.close()


class SilentPatient:
    """A patient transport that plays nothing: enough for a room to be open."""

    def connect_room(self, room: Room) -> None:
        pass

    def show_video(self, track: object) -> None:
        pass


async def test_the_token_opens_the_real_room_while_it_is_open_and_not_after(tmp_path: Path) -> None:
    console = build_console(tmp_path)
    rooms = Rooms()  # the live rooms of the server (media/rooms.py)
    app = Starlette(
        routes=clinician_routes(console.settings, console.auth, console.queue, console.audit, rooms)
    )
    session_id = "9f1c2b7a4d5e6f708192a3b4c5d6e7f8"
    rooms.open(session_id, SilentPatient(), patient_rate=24000)
    token = console.auth.issue_patient_token(session_id)
    url = f"/api/room/{session_id}/status"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as patient:
        during = await patient.get(url, headers=room(token))
        await rooms.close(session_id)  # the session ended
        after = await patient.get(url, headers=room(token))
    await console.queue.close()

    assert during.status_code == 200 and during.json() == {"status": "none", "clinician": None}
    assert after.status_code == 403 and "ended" in after.json()["error"]
    [entry] = [e for e in console.audit.entries() if e["event"] == "patient_token_rejected"]
    assert entry["session_id"] == session_id and entry["code"] == "session_ended"


async def test_a_room_token_in_the_query_string_is_refused(console: Console) -> None:
    token = console.auth.issue_patient_token("room-a")  # right room, live: only the place is wrong
    async with console.client() as patient:
        asked = await patient.post(f"/api/room/room-a/clinician?token={token}")
        status = await patient.get(f"/api/room/room-a/status?token={token}")
        both = await patient.get(f"/api/room/room-a/status?token={token}", headers=room(token))

    assert asked.status_code == status.status_code == both.status_code == 403
    assert "X-Room-Token" in asked.json()["error"]
    assert console.rooms.calls == [] and console.queue.for_session("room-a") is None


async def test_the_room_token_stops_working_when_the_session_ends(console: Console) -> None:
    token = console.auth.issue_patient_token("room-a")
    async with console.client() as patient:
        live = await patient.get("/api/room/room-a/status", headers=room(token))
        console.rooms.live.discard("room-a")  # the patient hung up: the room is closed
        status = await patient.get("/api/room/room-a/status", headers=room(token))
        asked = await patient.post("/api/room/room-a/clinician", headers=room(token))

    assert live.status_code == 200
    assert status.status_code == asked.status_code == 403
    assert "ended" in status.json()["error"]
    assert console.rooms.calls == []


async def test_the_room_token_outlives_the_old_expiry_while_the_session_is_live(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    console = build_console(tmp_path, clock=lambda: now[0])
    token = console.auth.issue_patient_token("room-a")
    now[0] += console.settings.clinician.patient_token_ttl_s + 3600  # a long consultation
    async with console.client() as patient:
        status = await patient.get("/api/room/room-a/status", headers=room(token))
        asked = await patient.post("/api/room/room-a/clinician", headers=room(token))
    await console.queue.close()

    assert status.status_code == 200 and asked.status_code == 202
    assert console.rooms.calls == [("request_clinician", "room-a")]


def test_the_patient_page_sends_the_token_in_the_header_never_in_the_address() -> None:
    for name in ("app.js", "patient_page.js", "livekit.js"):
        script = (STATIC / name).read_text()
        assert not re.search(r"[?&]token=", script), name
    assert "X-Room-Token" in (STATIC / "patient_page.js").read_text()
