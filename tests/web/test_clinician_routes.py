"""The clinician console's routes, its live event stream, and the patient's room endpoints."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from agent.escalation import EscalationOutcome, EscalationRecord, EscalationStatus, EscalationStore
from agent.policy import Urgency
from configs.settings import ClinicianAccount, Settings, load_settings
from tests.web.test_auth import FAST_HASHER, PASSWORD, password_hash
from web.audit import AuditLog
from web.auth import NO_ACCOUNTS_MESSAGE, Auth
from web.clinician import STATIC, clinician_routes
from web.queue import EscalationQueue

BASE = "http://testserver"
OFFER = {"sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "type": "offer"}
ANSWER = {"sdp": "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\n", "type": "answer"}


def escalation(session_id: str = "room-a", level: Urgency = Urgency.URGENT) -> EscalationRecord:
    return EscalationRecord.create(
        session_id=session_id,
        level=level,
        reasons=["Spreading redness with fever"],
        rule_ids=["cellulitis_fever"],
        summary="Red, warm patch on the shin for two days, with fever.",
        transcript=[("agent", "What brings you in?"), ("patient", "My leg is red and hot.")],
        similar_cases=[
            {"case_id": "c1", "labels": {"Cellulitis": 0.7}, "distance": 0.2, "matched_on": "image"}
        ],
        best_frame_jpeg_b64="/9j/4AAQSkZJRg==",
    )


class FakeRooms:
    """Records what the routes ask of the live room; asking for a clinician queues an escalation."""

    def __init__(self, queue: EscalationQueue) -> None:
        self.queue = queue
        self.calls: list[tuple[Any, ...]] = []
        self.live: set[str] = {"room-a", "room-b"}

    async def join(self, session_id: str, clinician_display_name: str, sdp: str, sdp_type: str) -> dict:
        self.calls.append(("join", session_id, clinician_display_name, sdp, sdp_type))
        return dict(ANSWER)

    async def request_summary(self, session_id: str) -> None:
        self.calls.append(("request_summary", session_id))

    async def hand_back(self, session_id: str) -> None:
        self.calls.append(("hand_back", session_id))

    async def end(self, session_id: str) -> None:
        self.calls.append(("end", session_id))
        self.live.discard(session_id)

    def is_live(self, session_id: str) -> bool:
        return session_id in self.live

    async def request_clinician(self, session_id: str) -> None:
        self.calls.append(("request_clinician", session_id))
        await self.queue.add(escalation(session_id))


@dataclass
class Console:
    settings: Settings
    auth: Auth
    queue: EscalationQueue
    audit: AuditLog
    rooms: FakeRooms
    app: Starlette

    def client(self, base_url: str = BASE, address: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 50000))
        return httpx.AsyncClient(transport=transport, base_url=base_url)


def build_console(
    tmp_path: Path,
    *,
    accounts: bool = True,
    keepalive_s: float = 15.0,
    clock: Callable[[], float] | None = None,
    **overrides: Any,
) -> Console:
    listed = [
        ClinicianAccount(username="ada", display_name="Dr Ada Lovelace", password_hash=password_hash()),
        ClinicianAccount(username="grace", display_name="Dr Grace Hopper", password_hash=password_hash()),
    ]
    settings = load_settings(
        escalations_dir=tmp_path / "escalations",
        secret_key="a test key that is long enough to sign things",
        clinician={
            "accounts": listed if accounts else [],
            "accounts_file": tmp_path / "clinicians.json",
            "audit_log": tmp_path / "audit.log",
        },
        **overrides,
    )
    auth = Auth(settings, hasher=FAST_HASHER, **({"clock": clock} if clock else {}))
    queue = EscalationQueue(EscalationStore(settings.path(settings.escalations_dir)))
    audit = AuditLog.from_settings(settings)
    rooms = FakeRooms(queue)
    routes = clinician_routes(settings, auth, queue, audit, rooms, keepalive_s=keepalive_s)
    app = Starlette(routes=[*routes, Mount("/static", StaticFiles(directory=STATIC), name="static")])
    return Console(settings, auth, queue, audit, rooms, app)


async def sign_in(client: httpx.AsyncClient, username: str = "ada") -> dict[str, str]:
    """Sign in; the headers a state-changing request then needs."""
    response = await client.post("/clinician/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrf"]}


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    console = build_console(tmp_path)
    yield console
    await console.queue.close()


def api(record: EscalationRecord, action: str) -> str:
    return f"/clinician/api/escalations/{record.id}/{action}"


# --- signing in ---------------------------------------------------------------------------


async def test_the_console_api_needs_a_signed_in_clinician(console: Console) -> None:
    record = escalation()
    await console.queue.add(record)
    async with console.client() as client:
        reads = [await client.get(p) for p in ("/clinician/api/escalations", "/clinician/api/events")]
        writes = [await client.post(api(record, a), json=OFFER) for a in ("claim", "join", "end")]

    assert all(r.status_code == 401 for r in reads + writes)
    assert reads[0].json()["error"] == "Please sign in."
    assert console.queue.get(record.id).status == "waiting"
    assert console.rooms.calls == []


async def test_signing_in_sets_a_private_strict_session_cookie(console: Console) -> None:
    async with console.client() as client:
        response = await client.post("/clinician/login", json={"username": "ada", "password": PASSWORD})
        me = await client.get("/clinician/api/me")

    cookie = response.headers["set-cookie"].lower()
    assert response.json()["display_name"] == "Dr Ada Lovelace"
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/clinician" in cookie
    assert "secure" not in cookie  # development runs on plain http://127.0.0.1
    assert me.status_code == 200 and me.json()["username"] == "ada"


async def test_outside_development_the_session_cookie_is_secure(tmp_path: Path) -> None:
    console = build_console(tmp_path, app_env="staging")
    async with console.client("https://testserver") as client:
        response = await client.post("/clinician/login", json={"username": "ada", "password": PASSWORD})
    assert "secure" in response.headers["set-cookie"].lower()


async def test_a_form_post_signs_in_too(console: Console) -> None:
    async with console.client() as client:
        response = await client.post("/clinician/login", data={"username": "grace", "password": PASSWORD})
    assert response.status_code == 200 and response.json()["display_name"] == "Dr Grace Hopper"


async def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(console: Console) -> None:
    async with console.client() as client:
        wrong = await client.post("/clinician/login", json={"username": "ada", "password": "not it at all"})
        unknown = await client.post("/clinician/login", json={"username": "mallory", "password": PASSWORD})
        me = await client.get("/clinician/api/me")

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "Wrong username or password."}
    assert "set-cookie" not in wrong.headers and me.status_code == 401


async def test_repeated_wrong_passwords_are_refused_for_a_while(console: Console) -> None:
    async with console.client() as client:
        for attempt in range(5):
            await client.post("/clinician/login", json={"username": "ada", "password": f"guess {attempt}"})
        limited = await client.post("/clinician/login", json={"username": "ada", "password": PASSWORD})

    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert "Too many attempts" in limited.json()["error"]


async def test_without_accounts_the_console_says_how_to_create_one(tmp_path: Path) -> None:
    console = build_console(tmp_path, accounts=False)
    async with console.client() as client:
        me = await client.get("/clinician/api/me")
        login = await client.post("/clinician/login", json={"username": "admin", "password": "admin"})

    assert me.status_code == 401 and me.json()["setup"] == NO_ACCOUNTS_MESSAGE
    assert login.status_code == 401 and login.json()["setup"] == NO_ACCOUNTS_MESSAGE


async def test_signing_out_ends_the_session_even_for_a_kept_copy_of_the_cookie(console: Console) -> None:
    async with console.client() as client:
        headers = await sign_in(client)
        kept = client.cookies.get("clinician_session")
        out = await client.post("/clinician/logout", headers=headers)
        after = await client.get("/clinician/api/escalations")
        replayed = await client.get("/clinician/api/escalations", cookies={"clinician_session": kept})

    assert out.status_code == 200
    assert after.status_code == 401 and replayed.status_code == 401


# --- CSRF ---------------------------------------------------------------------------------


async def test_a_change_without_the_sessions_csrf_token_or_from_another_site_is_refused(
    console: Console,
) -> None:
    record = escalation()
    await console.queue.add(record)
    async with console.client() as client:
        headers = await sign_in(client)
        refused = [
            await client.post(api(record, "claim")),
            await client.post(api(record, "claim"), headers={"X-CSRF-Token": "0" * 32}),
            await client.post(api(record, "claim"), headers={**headers, "Origin": "https://evil.example"}),
            await client.post(api(record, "claim"), headers={**headers, "Sec-Fetch-Site": "cross-site"}),
        ]
        assert console.queue.get(record.id).status == "waiting"
        accepted = await client.post(api(record, "claim"), headers={**headers, "Origin": BASE})

    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert "refused" in refused[0].json()["error"]
    assert accepted.status_code == 200 and console.queue.get(record.id).status == "claimed"


# --- the queue, claim to end --------------------------------------------------------------


async def test_the_list_is_most_urgent_first_with_what_the_console_shows(console: Console) -> None:
    routine, emergency = escalation("room-a", Urgency.ROUTINE), escalation("room-b", Urgency.EMERGENCY)
    await console.queue.add(routine)
    await console.queue.add(emergency)
    async with console.client() as client:
        await sign_in(client)
        listed = (await client.get("/clinician/api/escalations")).json()

    assert [item["id"] for item in listed] == [emergency.id, routine.id]
    first = listed[0]
    assert first["level"] == "emergency" and first["status"] == "waiting" and first["live"] is True
    assert first["summary"] == emergency.summary and first["transcript"] == emergency.transcript
    assert first["similar_cases"][0]["labels"] == {"Cellulitis": 0.7}
    assert first["best_frame_jpeg_b64"] and first["waiting_s"] >= 0 and first["clinician_name"] is None


async def test_a_clinician_takes_an_escalation_from_claim_to_end(console: Console) -> None:
    record = escalation()
    await console.queue.add(record)
    async with console.client() as client:
        headers = await sign_in(client)
        claimed = await client.post(api(record, "claim"), headers=headers)
        joined = await client.post(api(record, "join"), headers=headers, json=OFFER)
        summary = await client.post(api(record, "summary"), headers=headers)
        handed = await client.post(api(record, "hand-back"), headers=headers)
        rejoined = await client.post(api(record, "join"), headers=headers, json=OFFER)
        ended = await client.post(api(record, "end"), headers=headers, json={"outcome": "referred"})

    assert claimed.json()["status"] == "claimed" and claimed.json()["clinician_name"] == "Dr Ada Lovelace"
    assert joined.json() == ANSWER and rejoined.json() == ANSWER
    assert summary.status_code == 202
    assert handed.json()["status"] == "handed_back"
    assert ended.json()["status"] == "ended"
    assert console.rooms.calls == [
        ("join", "room-a", "Dr Ada Lovelace", OFFER["sdp"], "offer"),
        ("request_summary", "room-a"),
        ("hand_back", "room-a"),
        ("join", "room-a", "Dr Ada Lovelace", OFFER["sdp"], "offer"),
        ("end", "room-a"),
    ]
    events = console.queue.get(record.id).events
    assert [e["event"] for e in events] == ["claimed", "joined", "handed_back", "joined", "ended"]
    assert events[-1]["outcome"] is EscalationOutcome.REFERRED
    assert console.audit.entries()[-1]["code"] == "referred"


async def test_ending_a_claimed_escalation_without_joining_ends_the_waiting_patients_session(
    console: Console,
) -> None:
    record = escalation()
    await console.queue.add(record)
    async with console.client() as client:
        headers = await sign_in(client)
        await client.post(api(record, "claim"), headers=headers)
        ended = await client.post(api(record, "end"), headers=headers, json={"outcome": "emergency_services"})

    assert ended.json()["status"] == "ended"
    assert console.rooms.calls == [("end", "room-a")]  # the patient is not left waiting for nobody


async def test_an_outcome_that_is_not_one_of_the_outcomes_is_refused(console: Console) -> None:
    record = escalation()
    await console.queue.add(record)
    async with console.client() as client:
        headers = await sign_in(client)
        await client.post(api(record, "claim"), headers=headers)
        refused = await client.post(api(record, "end"), headers=headers, json={"outcome": "cured"})
        garbled = await client.post(api(record, "end"), headers=headers, content=b"{not json")

    assert refused.status_code == garbled.status_code == 400
    assert refused.json()["error"] == (
        "The outcome is one of: completed, referred, emergency_services, patient_left."
    )
    assert console.queue.get(record.id).status is EscalationStatus.CLAIMED


async def test_a_second_clinician_cannot_claim_or_join_anothers_escalation(console: Console) -> None:
    record = escalation()
    await console.queue.add(record)
    async with console.client() as ada, console.client() as grace:
        ada_headers, grace_headers = await sign_in(ada), await sign_in(grace, "grace")
        await ada.post(api(record, "claim"), headers=ada_headers)
        conflict = await grace.post(api(record, "claim"), headers=grace_headers)
        join = await grace.post(api(record, "join"), headers=grace_headers, json=OFFER)
        end = await grace.post(api(record, "end"), headers=grace_headers)

    assert conflict.status_code == 409
    assert conflict.json()["error"] == "Already claimed by Dr Ada Lovelace."
    assert join.status_code == 403 and end.status_code == 403
    assert console.rooms.calls == []
    assert console.queue.get(record.id).clinician == "ada"


async def test_joining_before_claiming_or_after_the_patient_left_is_refused(console: Console) -> None:
    record = escalation()
    await console.queue.add(record)
    async with console.client() as client:
        headers = await sign_in(client)
        unclaimed = await client.post(api(record, "join"), headers=headers, json=OFFER)
        await client.post(api(record, "claim"), headers=headers)
        console.rooms.live.clear()
        gone = await client.post(api(record, "join"), headers=headers, json=OFFER)
        unknown = await client.post("/clinician/api/escalations/nope/claim", headers=headers)

    assert unclaimed.status_code == 403
    assert gone.status_code == 409 and "patient has left" in gone.json()["error"]
    assert unknown.status_code == 404
    assert console.queue.get(record.id).status == "claimed"


async def test_a_released_escalation_can_be_claimed_by_a_colleague(console: Console) -> None:
    record = escalation()
    await console.queue.add(record)
    async with console.client() as ada, console.client() as grace:
        ada_headers, grace_headers = await sign_in(ada), await sign_in(grace, "grace")
        await ada.post(api(record, "claim"), headers=ada_headers)
        released = await ada.post(api(record, "release"), headers=ada_headers)
        taken = await grace.post(api(record, "claim"), headers=grace_headers)

    assert released.json()["status"] == "waiting"
    assert taken.json()["clinician_name"] == "Dr Grace Hopper"


# --- the patient's side -------------------------------------------------------------------


def room(token: str) -> dict[str, str]:
    """The header the patient's page sends its room token in."""
    return {"X-Room-Token": token}


async def test_the_patient_asks_for_a_clinician_and_sees_who_is_coming(console: Console) -> None:
    token = console.auth.issue_patient_token("room-a")
    async with console.client() as patient, console.client() as clinician:
        before = await patient.get("/api/room/room-a/status", headers=room(token))
        asked = await patient.post("/api/room/room-a/clinician", headers=room(token))
        again = await patient.post("/api/room/room-a/clinician", headers=room(token))
        headers = await sign_in(clinician)
        record = console.queue.for_session("room-a")
        await clinician.post(api(record, "claim"), headers=headers)
        after = await patient.get("/api/room/room-a/status", headers=room(token))

    assert before.json() == {"status": "none", "clinician": None}
    assert asked.status_code == 202 and asked.json()["status"] == "waiting"
    assert again.status_code == 200  # asking twice queues one escalation
    assert console.rooms.calls == [("request_clinician", "room-a")]
    assert after.json() == {"status": "claimed", "clinician": "Dr Ada Lovelace"}


async def test_a_token_for_another_room_or_none_is_refused(console: Console) -> None:
    token_for_a = console.auth.issue_patient_token("room-a")
    async with console.client() as patient:
        other_room = await patient.post("/api/room/room-b/clinician", headers=room(token_for_a))
        no_token = await patient.post("/api/room/room-b/clinician")
        status = await patient.get("/api/room/room-b/status", headers=room(token_for_a))

    assert other_room.status_code == no_token.status_code == status.status_code == 403
    assert "not valid" in other_room.json()["error"]
    assert console.rooms.calls == []
    assert console.queue.for_session("room-b") is None


async def test_asking_for_a_clinician_after_the_conversation_ended_says_so(console: Console) -> None:
    token = console.auth.issue_patient_token("room-c")  # not live
    async with console.client() as patient:
        response = await patient.post("/api/room/room-c/clinician", headers=room(token))
    assert response.status_code == 403 and "ended" in response.json()["error"]
    assert console.rooms.calls == []


# --- sign-in under attack, idle sessions --------------------------------------------------


async def test_an_attackers_wrong_passwords_do_not_lock_the_clinician_out(console: Console) -> None:
    async with console.client(address="203.0.113.7") as attacker, console.client(address="10.1.2.3") as ada:
        guesses = [
            await attacker.post("/clinician/login", json={"username": "ada", "password": f"guess {n}"})
            for n in range(8)
        ]
        response = await ada.post("/clinician/login", json={"username": "ada", "password": PASSWORD})
        me = await ada.get("/clinician/api/me")

    assert [g.status_code for g in guesses] == [401] * 5 + [429] * 3
    assert response.status_code == 200 and me.json()["username"] == "ada"


async def test_a_console_left_unused_is_signed_out_and_use_keeps_it_signed_in(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    console = build_console(tmp_path, clock=lambda: now[0])
    idle = console.settings.clinician.session_idle_timeout_s
    async with console.client() as ada, console.client() as grace:
        await sign_in(ada)
        await sign_in(grace, "grace")
        for _ in range(3):  # Ada keeps working; Grace walks away
            now[0] += idle - 60
            assert (await ada.get("/clinician/api/escalations")).status_code == 200
        left = await grace.get("/clinician/api/escalations")
        working = await ada.get("/clinician/api/me")

    await console.queue.close()
    assert working.status_code == 200 and working.json()["username"] == "ada"
    assert left.status_code == 401 and left.json()["error"] == "Please sign in."


# --- the live stream ----------------------------------------------------------------------


async def next_event(lines: AsyncIterator[str]) -> tuple[str, dict]:
    """The next server-sent event (comments skipped)."""
    event, data = "message", []
    async for line in lines:
        if not line:
            if data:
                return event, json.loads("\n".join(data))
            continue
        name, _, value = line.partition(":")
        if name == "event":
            event = value.strip()
        elif name == "data":
            data.append(value.strip())
    raise AssertionError("the stream ended")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_signed_in_console_sees_a_new_escalation_live(console: Console) -> None:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(console.app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.02)  # noqa: ASYNC110 - uvicorn exposes no event for this
    assert server.started
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await sign_in(client)
            async with client.stream("GET", "/clinician/api/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.aiter_lines()
                assert await next_event(lines) == ("snapshot", {"escalations": []})
                record = escalation(level=Urgency.EMERGENCY)
                await console.queue.add(record)
                kind, change = await asyncio.wait_for(next_event(lines), 5)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)

    assert kind == "change" and change["kind"] == "added"
    assert change["escalation"]["id"] == record.id and change["escalation"]["level"] == "emergency"
    assert change["escalation"]["summary"] == record.summary


class RawStream:
    """Drives the ASGI app directly, to watch keep-alives and a client going away."""

    def __init__(self, console: Console, cookie: str) -> None:
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.gone = asyncio.Event()
        self._sent_request = False
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/clinician/api/events",
            "raw_path": b"/clinician/api/events",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"cookie", f"clinician_session={cookie}".encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.task = asyncio.create_task(console.app(scope, self._receive, self._send))

    async def _receive(self) -> dict:
        if not self._sent_request:
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            await self.chunks.put(message["body"])

    async def read_until(self, text: str) -> str:
        seen = ""
        while text not in seen:
            seen += (await asyncio.wait_for(self.chunks.get(), 5)).decode()
        return seen


async def test_the_stream_keeps_alive_and_ends_when_the_client_goes_away(tmp_path: Path) -> None:
    console = build_console(tmp_path, keepalive_s=0.05)
    async with console.client() as client:
        await sign_in(client)
        cookie = client.cookies.get("clinician_session")
    stream = RawStream(console, cookie)

    assert "event: snapshot" in await stream.read_until("\n\n")
    assert ": keep-alive" in await stream.read_until(": keep-alive")
    stream.gone.set()
    await asyncio.wait_for(stream.task, 5)  # the stream ended with the client

    await console.queue.add(escalation())  # nobody is listening any more: nothing to fail
    assert console.queue.list()[0].status == "waiting"


async def test_the_stream_tells_a_signed_out_console_and_stops(tmp_path: Path) -> None:
    console = build_console(tmp_path, keepalive_s=0.05)
    async with console.client() as client:
        headers = await sign_in(client)
        cookie = client.cookies.get("clinician_session")
        stream = RawStream(console, cookie)
        await stream.read_until("event: snapshot")
        await client.post("/clinician/logout", headers=headers)

    assert "event: signed-out" in await stream.read_until("event: signed-out")
    await asyncio.wait_for(stream.task, 5)


# --- the page -----------------------------------------------------------------------------


async def test_the_console_page_has_its_controls_and_loads_nothing_from_the_internet(
    console: Console,
) -> None:
    async with console.client() as client:
        page = await client.get("/clinician")
        script = await client.get("/static/clinician.js")
        style = await client.get("/static/clinician.css")

    for element in (
        'id="login-form"',
        'id="username"',
        'id="password"',
        'id="queue"',
        'id="patient-video"',
        'id="patient-audio"',
        'id="call-state"',
    ):
        assert element in page.text
    assert script.status_code == style.status_code == 200
    for needle in (
        "EventSource",
        "getUserMedia",
        "RTCPeerConnection",
        "sendrecv",
        "iceGatheringState",
        "processing",
        "data:image/jpeg;base64,",
        "X-CSRF-Token",
    ):
        assert needle in script.text
    for css_class in ("claim", "join", "summary", "hand-back", "end", "escalation"):
        assert f'"{css_class}' in script.text or f"'{css_class}" in script.text
    for text in (page.text, script.text, style.text):
        assert not re.search(r"https?://", text)
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
