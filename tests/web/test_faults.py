"""Faults in the server's own storage end in a defined, visible state, never in a lost escalation.

The server is the product as ``python -m web`` builds it (``create_app`` around the composition
root); the faults are real ones: the escalation folder or the audit log's folder is a file, so
every write fails; the process stops with escalations open and a new one starts on the same
folder. The in-session faults (model, TTS, processor, hang-up) are in
``tests/pipeline/test_faults.py``; ``docs/faults.md`` lists every fault and its test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pipecat.tests.utils import SleepFrame, run_test
from starlette.testclient import TestClient

from agent.policy import Urgency
from configs.settings import ClinicianAccount, Settings, load_settings
from pipeline.escalation import EscalationProcessor
from pipeline.observers import EscalationObserver
from tests.pipeline.safety_helpers import state
from tests.pipeline.test_faults import Clinicians
from tests.web.test_auth import PASSWORD, password_hash
from tests.web.test_clinician_routes import escalation
from web.app import create_app
from web.product import build_product


def server_settings(tmp_path: Path, **overrides: Any) -> Settings:
    ada = ClinicianAccount(username="ada", display_name="Dr Ada Lovelace", password_hash=password_hash())
    folders: dict[str, Any] = {
        "escalations_dir": tmp_path / "escalations",
        "vector_store_dir": tmp_path / "chroma",
        "secret_key": "a test key that is long enough to sign things",
        "clinician": {
            "accounts": [ada],
            "accounts_file": tmp_path / "clinicians.json",
            "audit_log": tmp_path / "audit" / "audit.log",
        },
    }
    return load_settings(**{**folders, **overrides})


def signed_in(client: TestClient) -> dict[str, str]:
    response = client.post("/clinician/login", json={"username": "ada", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrf"]}


def test_an_unwritable_escalation_store_shows_on_health_and_the_escalation_still_reaches_the_console(
    tmp_path: Path,
) -> None:
    (tmp_path / "escalations").write_text("")  # the folder is a file: every record write fails
    settings = server_settings(tmp_path)
    product = build_product(settings, phone=False)
    record = escalation("room-a", Urgency.EMERGENCY)
    with TestClient(create_app(settings, product)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        client.portal.call(product.queue.add, record)
        client.portal.call(product.queue.flush, 5.0)
        health = client.get("/health").json()
        signed_in(client)
        listed = client.get("/clinician/api/escalations").json()
    assert health == {"status": "degraded"}  # loud to the load balancer and the alert
    assert [item["id"] for item in listed] == [record.id]  # and a clinician still sees the patient


def test_an_unwritable_audit_log_shows_on_health(tmp_path: Path) -> None:
    (tmp_path / "audit").write_text("")  # the audit log's folder is a file
    settings = server_settings(tmp_path)
    with TestClient(create_app(settings, build_product(settings, phone=False))) as client:
        assert client.get("/health").json() == {"status": "ok"}
        signed_in(client)  # a sign-in is audited: the write fails
        for _ in range(50):  # the write happens on the audit's own thread
            if client.get("/health").json()["status"] != "ok":
                break
        health = client.get("/health").json()
    assert health == {"status": "degraded"}


def test_a_restart_while_escalations_are_open_loses_none_and_each_is_still_claimable(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    levels = (Urgency.EMERGENCY, Urgency.URGENT, Urgency.SOON)
    records = [escalation(f"room-{n}", level) for n, level in enumerate(levels)]
    first = build_product(settings, phone=False)
    with TestClient(create_app(settings, first)) as client:
        for record in records:
            client.portal.call(first.queue.add, record)
        headers = signed_in(client)
        claimed = client.post(f"/clinician/api/escalations/{records[0].id}/claim", headers=headers)
        assert claimed.status_code == 200, claimed.text
    # The process stops (the claim is lost with it); a new one starts on the same folder.
    second = build_product(settings, phone=False)
    with TestClient(create_app(settings, second)) as client:
        headers = signed_in(client)
        listed = client.get("/clinician/api/escalations").json()
        claims = [
            client.post(f"/clinician/api/escalations/{record.id}/claim", headers=headers).status_code
            for record in records
        ]
    assert sorted(item["id"] for item in listed) == sorted(record.id for record in records)
    assert {item["status"] for item in listed} == {"waiting"}
    assert claims == [200] * len(records)


def test_an_escalation_no_queue_took_leaves_health_degraded(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    with TestClient(create_app(settings, build_product(settings, phone=False))) as client:
        assert client.get("/health").json() == {"status": "ok"}

        async def a_session_whose_queue_refuses() -> None:
            processor = EscalationProcessor(session_id="s1", store=None)
            refusing = Clinicians(refuse=1)
            await run_test(
                processor,
                frames_to_send=[state("My mole is bleeding."), SleepFrame(sleep=0.2)],
                observers=[EscalationObserver(refusing.add)],
            )

        asyncio.run(a_session_whose_queue_refuses())  # a session of this process (its own loop)
        health = client.get("/health").json()
        details = client.get("/health/details").json()
    assert health == {"status": "degraded"}  # until the operator has looked (a restart clears it)
    assert details["escalations_not_taken"] == 1
