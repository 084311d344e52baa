"""The server's own endpoints, through the ASGI app."""

from __future__ import annotations

from starlette.testclient import TestClient

from configs.settings import Settings
from web.app import create_app


def test_health_says_ok_with_environment_and_version(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        body = client.get("/health/details").json()
    assert body["status"] == "ok"
    assert body["env"] == "development"
    assert body["version"] == "0.1.0"
    assert body["retrieval"]["index"] == "missing"  # says what is missing rather than failing
    assert body["retrieval"]["text_model"] == "ready"


def test_the_phone_bridge_starts_with_the_server_when_enabled(settings: Settings) -> None:
    enabled = settings.model_copy(
        update={"sip": settings.sip.model_copy(update={"enabled": True, "host": "127.0.0.1", "port": 0})}
    )
    with TestClient(create_app(enabled)) as client:
        phone = client.get("/health/details").json()["phone"]
    assert phone["active_calls"] == 0 and phone["port"] > 0
    with TestClient(create_app(settings)) as client:
        assert client.get("/health/details").json()["phone"] == "disabled"


def test_metrics_expose_latency_histogram_and_active_sessions(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "voice_to_voice_latency_seconds_bucket" in response.text
    assert "active_sessions" in response.text


def test_the_patient_page_has_the_controls_and_the_disclaimer(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        page = client.get("/").text
        script = client.get("/static/patient_page.js")  # both modes' microphone, shared
    for element in ('id="start"', 'id="mute"', 'id="preview"', 'id="captions"', 'id="state"'):
        assert element in page
    assert "not a diagnosis" in page and '<script src="/static/patient_page.js">' in page
    assert script.status_code == 200 and "getUserMedia" in script.text


def test_a_malformed_offer_is_refused_with_a_reason(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/offer", content=b"not json")
    assert response.status_code == 400
    assert "sdp" in response.json()["error"]


def test_malformed_offers_are_refused_with_400_and_hold_no_line(settings: Settings) -> None:
    one_line = settings.model_copy(
        update={"sessions": settings.sessions.model_copy(update={"max_concurrent": 1})}
    )
    bad = [
        {"sdp": 5, "type": "offer"},
        {"sdp": "v=0\r\nnot an offer", "type": "offer"},
        {"sdp": "v=x", "type": "offer"},
        {"sdp": "", "type": "bogus"},
        {"sdp": "v=0", "type": "offer", "pc_id": ["x"]},
        [],
        "null",
    ]
    with TestClient(create_app(one_line)) as client:
        statuses = [client.post("/api/offer", json=body).status_code for body in bad]
        statuses.append(client.post("/api/offer", content=b"{not json").status_code)
        lines = client.get("/health/details").json()
    assert statuses == [400] * (len(bad) + 1)  # never a 500, and never "all lines busy"
    assert lines["active_sessions"] == 0
