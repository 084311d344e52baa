"""Admission control and hardening of the web server: the session cap, per-address rate limits,
the body-size limit, the security headers, the public and the guarded health and metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from configs.settings import Settings, load_settings
from tests.web.test_auth import PASSWORD
from tests.web.test_clinician_routes import BASE, FakeRooms, build_console, escalation
from web.app import create_app
from web.clinician import clinician_routes
from web.product import build_product

OFFER = {"sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "type": "offer"}
MONITORING_TOKEN = "a monitoring token for the tests"


def with_sessions(settings: Settings, **sessions: Any) -> Settings:
    return settings.model_copy(update={"sessions": settings.sessions.model_copy(update=sessions)})


def production(tmp_path: Path) -> Settings:
    """A valid production setting set (tests/configs/test_settings.py), writing under tmp_path."""
    return load_settings(
        app_env="production",
        secret_key="x" * 32,
        monitoring_token=MONITORING_TOKEN,
        escalations_dir=tmp_path / "escalations",
        vector_store_dir=tmp_path / "chroma",
        clinician={"accounts_file": tmp_path / "clinicians.json", "audit_log": tmp_path / "audit.log"},
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


# --- the session cap ----------------------------------------------------------------------


def test_over_the_cap_the_patient_is_told_all_lines_are_busy_and_the_emergency_number(
    settings: Settings,
) -> None:
    capped = with_sessions(settings, max_concurrent=1, busy_retry_after_s=45)
    safety = capped.safety.model_copy(update={"emergency_number": "112"})
    capped = capped.model_copy(update={"safety": safety})
    product = build_product(capped)
    with TestClient(create_app(capped, product)) as client:
        product.host.live["a-phone-call"] = object()  # type: ignore[assignment]  # the one line, taken
        try:
            response = client.post("/api/offer", json=OFFER)
            live_after = len(product.host)
        finally:
            product.host.live.pop("a-phone-call")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "45"
    body = response.json()
    assert "All lines are busy" in body["error"] and "112" in body["error"]
    assert body["emergency_number"] == "112"
    assert "room_token" not in body
    assert live_after == 1  # no session was built for the refused offer


def test_under_the_cap_an_offer_is_not_refused_as_busy(settings: Settings) -> None:
    with TestClient(create_app(with_sessions(settings, max_concurrent=1))) as client:
        response = client.post("/api/offer", content=b"not json")
    assert response.status_code == 400  # reached the offer itself


def test_the_patient_page_shows_the_servers_busy_message(client: TestClient) -> None:
    script = client.get("/static/patient_page.js").text  # both modes' refusals, shared
    assert "status === 503" in script and "body.error" in script


# --- rate limits --------------------------------------------------------------------------


def test_offers_from_one_address_are_limited_per_minute(settings: Settings) -> None:
    with TestClient(create_app(with_sessions(settings, offers_per_minute=2))) as client:
        statuses = [client.post("/api/offer", content=b"not json").status_code for _ in range(3)]
        refused = client.post("/api/offer", json=OFFER)
    assert statuses == [400, 400, 429]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Too many attempts" in refused.json()["error"]


async def test_clinician_sign_ins_from_one_address_are_limited_even_when_right(tmp_path: Path) -> None:
    console = build_console(tmp_path, sessions={"sign_ins_per_minute": 2})
    credentials = {"username": "ada", "password": PASSWORD}
    async with console.client() as browser:
        statuses = [(await browser.post("/clinician/login", json=credentials)).status_code for _ in range(3)]
        refused = await browser.post("/clinician/login", json=credentials)
    await console.queue.close()
    assert statuses == [200, 200, 429]
    assert "Retry-After" in refused.headers


async def test_the_patients_clinician_button_is_limited_per_address(tmp_path: Path) -> None:
    console = build_console(tmp_path, sessions={"clinician_requests_per_minute": 2})
    token = console.auth.issue_patient_token("room-c")  # not live: every press answers 403
    headers = {"X-Room-Token": token}
    async with console.client() as patient:
        presses = [await patient.post("/api/room/room-c/clinician", headers=headers) for _ in range(3)]
    await console.queue.close()
    assert [p.status_code for p in presses] == [403, 403, 429]


# --- the patient's clinician request, once ------------------------------------------------


class AgentRooms(FakeRooms):
    """Like the live room: the request goes to the agent, whose escalation reaches the queue later."""

    async def request_clinician(self, session_id: str) -> None:
        self.calls.append(("request_clinician", session_id))


async def test_a_second_press_while_the_request_is_on_its_way_adds_nothing(tmp_path: Path) -> None:
    console = build_console(tmp_path)
    rooms = AgentRooms(console.queue)
    routes = clinician_routes(console.settings, console.auth, console.queue, console.audit, rooms)
    app = Starlette(routes=routes)
    token = console.auth.issue_patient_token("room-a")
    url, headers = "/api/room/room-a/clinician", {"X-Room-Token": token}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as patient:
        first = await patient.post(url, headers=headers)
        second = await patient.post(url, headers=headers)  # pressed again before the escalation is queued
        await console.queue.add(escalation("room-a"))  # the agent's escalation arrives
        third = await patient.post(url, headers=headers)
    await console.queue.close()

    assert first.status_code == 202
    assert second.status_code == 200 and third.status_code == 200
    assert third.json()["status"] == "waiting"
    assert rooms.calls == [("request_clinician", "room-a")]  # one request reached the agent
    audit = (tmp_path / "audit.log").read_text()
    assert audit.count("patient_requested_clinician") == 1


# --- the body-size limit ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "chunked"),
    [
        ("/api/offer", False),
        ("/api/offer", True),  # no Content-Length: refused once the bytes read pass the limit
        ("/clinician/login", False),
        ("/clinician/login", True),
        ("/api/room/room-a/clinician", False),
    ],
)
def test_a_body_over_the_limit_is_refused_with_413(settings: Settings, path: str, chunked: bool) -> None:
    limited = settings.model_copy(update={"max_request_bytes": 2048})
    body = b"{" + b" " * 4096 + b"}"
    with TestClient(create_app(limited)) as client:
        if chunked:
            response = client.post(path, content=iter([body[:1024], body[1024:]]))
        else:
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        small = client.post("/api/offer", content=b"not json")
    assert response.status_code == 413
    assert "too large" in response.json()["error"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert small.status_code == 400


# --- security headers ---------------------------------------------------------------------

ROUTES = [
    ("GET", "/"),
    ("GET", "/static/app.js"),
    ("GET", "/static/style.css"),
    ("GET", "/clinician"),
    ("GET", "/static/clinician.js"),
    ("GET", "/health"),
    ("GET", "/health/details"),
    ("GET", "/metrics"),
    ("POST", "/api/offer"),
    ("GET", "/api/room/room-a/status"),
    ("POST", "/api/room/room-a/clinician"),
    ("POST", "/clinician/login"),
    ("GET", "/clinician/api/me"),
    ("GET", "/no/such/page"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_response_carries_the_security_headers(client: TestClient, method: str, path: str) -> None:
    headers = client.request(method, path).headers
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in headers  # development: the quick start is http


def test_outside_development_responses_ask_for_https(settings: Settings, tmp_path: Path) -> None:
    with TestClient(create_app(production(tmp_path), build_product(settings))) as client:
        page, health = client.get("/"), client.get("/health")
    for response in (page, health):
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_the_pages_have_no_inline_script_or_style(client: TestClient) -> None:
    for path in ("/", "/clinician"):
        page = client.get(path).text
        assert "<style" not in page and " style=" not in page and " on" + "click=" not in page
        for tag in page.split("<script")[1:]:
            assert tag.lstrip().startswith("src="), tag[:80]


# --- health and metrics -------------------------------------------------------------------


def test_the_public_health_says_ok_and_nothing_else(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_monitoring_needs_the_token_in_production(settings: Settings, tmp_path: Path) -> None:
    with TestClient(create_app(production(tmp_path), build_product(settings))) as client:
        public = client.get("/health")
        anonymous = [client.get(path) for path in ("/health/details", "/metrics")]
        wrong = [
            client.get(path, headers={"Authorization": "Bearer not the token"})
            for path in ("/health/details", "/metrics")
        ]
        good = {"Authorization": f"Bearer {MONITORING_TOKEN}"}
        details = client.get("/health/details", headers=good)
        metrics = client.get("/metrics", headers=good)

    assert public.status_code == 200 and public.json() == {"status": "ok"}
    for refused in anonymous + wrong:
        assert refused.status_code == 401
        assert "version" not in refused.text and "active_sessions" not in refused.text
    assert details.status_code == 200
    assert {"version", "backend", "active_sessions", "phone"} <= details.json().keys()
    assert metrics.status_code == 200 and "active_sessions" in metrics.text


def test_in_development_without_a_token_monitoring_stays_open(client: TestClient) -> None:
    assert client.get("/health/details").json()["env"] == "development"
    assert client.get("/metrics").status_code == 200
