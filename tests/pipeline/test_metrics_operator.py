"""The metrics an operator acts on (the runbook's names, ``docs/runbook.md``, "Metrics and alerts").

Each one is read from the registry ``/metrics`` serves, before and after the event it counts,
with the real component doing what a session would: the latency observer timing a reply, the
escalation processor escalating for each cause, the brain waiting on a backend that hangs, the
redactor given a text it cannot take, a full server refusing a phone call, the phone bridge
starting and stopping, and the server's escalation folder failing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.tests.utils import SleepFrame, run_test
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from agent import pii
from agent.escalation import EscalationStore
from agent.policy import Urgency
from pipeline.brain import BrainProcessor
from pipeline.escalation import EscalationProcessor
from pipeline.frames import BrainFailedFrame, ClinicianRequestFrame, ProcessorFailedFrame
from pipeline.metrics import EscalationCause
from pipeline.observers import VoiceLatencyObserver
from tests.pipeline.safety_helpers import state
from tests.pipeline.test_brain import ScriptedBackend, patient
from tests.pipeline.test_turn_metrics import feed, pair


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- prediction_latency_ms ------------------------------------------------------------------


async def test_each_reply_is_timed_in_milliseconds_under_the_runbooks_name() -> None:
    before_ms = value("prediction_latency_ms_sum"), value("prediction_latency_ms_count")
    before_s = value("voice_to_voice_latency_seconds_sum")
    observer = VoiceLatencyObserver()
    await feed(observer, [(0.0, f) for f in pair(VADUserStoppedSpeakingFrame, stop_secs=0.2)])
    await feed(observer, [(0.0, f) for f in pair(UserStoppedSpeakingFrame)])
    await asyncio.sleep(0.3)  # the agent answers 0.5 s after the patient's speech ended
    await feed(observer, [(0.0, f) for f in pair(BotStartedSpeakingFrame)])

    [latency_s] = observer.latencies_s
    added_ms = value("prediction_latency_ms_sum") - before_ms[0]
    assert value("prediction_latency_ms_count") - before_ms[1] == 1
    assert added_ms == pytest.approx(latency_s * 1000.0) and 500 <= added_ms < 1000
    assert added_ms == pytest.approx((value("voice_to_voice_latency_seconds_sum") - before_s) * 1000.0)


def test_the_latency_buckets_resolve_the_slo_and_well_below_it() -> None:
    [metric] = [m for m in REGISTRY.collect() if m.name == "prediction_latency_ms"]
    bounds = sorted({float(s.labels["le"]) for s in metric.samples if s.name.endswith("_bucket")})
    assert 2000.0 in bounds  # the SLO is a bucket edge: "p95 over 2 s" is read exactly
    below = [b for b in bounds if b <= 2000.0]
    assert len(below) >= 15 and max(b - a for a, b in zip(below, below[1:], strict=False)) <= 100.0
    assert any(b >= 5000.0 for b in bounds)  # a p99 past the SLO still lands in a bucket


# --- escalations_total{level, cause} --------------------------------------------------------


def test_every_level_and_cause_is_exported_at_zero_before_any_escalation() -> None:
    for level in ("urgent", "emergency"):
        for cause in EscalationCause:
            assert (
                REGISTRY.get_sample_value("escalations_total", {"level": level, "cause": cause.value})
                is not None
            )


@pytest.mark.parametrize(
    ("frame", "level", "cause"),
    [
        (lambda: state("My mole is bleeding."), "urgent", EscalationCause.RED_FLAG),
        (lambda: state("My lips are swelling up."), "emergency", EscalationCause.RED_FLAG),
        (lambda: BrainFailedFrame(reason="the brain timed out"), "urgent", EscalationCause.BRAIN_FAILURE),
        (lambda: ProcessorFailedFrame(reason="tts failed"), "urgent", EscalationCause.PROCESSOR_FAILURE),
        (lambda: ClinicianRequestFrame(how="phone keypad 0"), "urgent", EscalationCause.PATIENT_REQUEST),
    ],
)
async def test_an_escalation_is_counted_by_its_level_and_its_cause(
    tmp_path: Path, frame, level: str, cause: EscalationCause
) -> None:
    labels = {"level": level, "cause": cause.value}
    before = value("escalations_total", **labels)
    others = sum(
        value("escalations_total", level=lv, cause=c.value)
        for lv in ("urgent", "emergency")
        for c in EscalationCause
    )
    processor = EscalationProcessor(session_id="s1", store=EscalationStore(tmp_path / "esc"))
    await run_test(processor, frames_to_send=[frame()])
    after_all = sum(
        value("escalations_total", level=lv, cause=c.value)
        for lv in ("urgent", "emergency")
        for c in EscalationCause
    )
    assert value("escalations_total", **labels) == before + 1
    assert after_all == others + 1  # under that cause only


# --- model backend timeouts and errors ------------------------------------------------------


async def test_a_backend_that_hangs_is_counted_as_a_timeout_of_that_backend() -> None:
    before = value("model_backend_timeouts_total", backend="scripted")
    errors = value("model_backend_errors_total", backend="scripted")
    brain = BrainProcessor(ScriptedBackend(["late"], delay_s=5), first_text_timeout_s=0.2)
    await run_test(brain, frames_to_send=[patient("hi"), SleepFrame(sleep=0.4)])
    assert value("model_backend_timeouts_total", backend="scripted") == before + 1
    assert value("model_backend_errors_total", backend="scripted") == errors


async def test_a_backend_that_crashes_is_counted_as_an_error_of_that_backend() -> None:
    before = value("model_backend_errors_total", backend="scripted")
    await run_test(BrainProcessor(ScriptedBackend([], fail=True)), frames_to_send=[patient("hi")])
    assert value("model_backend_errors_total", backend="scripted") == before + 1


def test_the_backend_series_exist_at_zero_once_a_session_has_its_brain() -> None:
    BrainProcessor(ScriptedBackend([]))
    assert REGISTRY.get_sample_value("model_backend_timeouts_total", {"backend": "scripted"}) is not None


# --- redaction failures ---------------------------------------------------------------------


def test_a_text_the_redactor_cannot_take_is_counted_as_a_redaction_failure() -> None:
    before = value("redaction_failures_total")
    assert pii.redact("My name is Jane Doe.") != "My name is Jane Doe."  # a working redactor...
    assert value("redaction_failures_total") == before
    with pytest.raises(ValueError, match="E088"):  # ...and a text over spaCy's length limit
        pii.redact("rash " * 250_000)
    assert value("redaction_failures_total") == before + 1


# --- the phone: refused at the cap, and the bridge up -----------------------------------------


async def test_a_call_refused_because_every_line_is_taken_is_counted(tmp_path: Path) -> None:
    from tests.media.sip.probe import UdpProbe, offer, request
    from tests.media.sip.test_lines import start_server

    server = await start_server(tmp_path, lines=1)
    held = server.host.reserve_line()
    probe = await UdpProbe.open()
    before = value("sessions_refused_total")
    try:
        probe.send(request("INVITE", port=probe.port, body=offer(probe.port)), server.port)
        final = await probe.wait(lambda m: not m.is_request and int(m.status or 0) >= 200)
        assert final is not None and final.status == 503
        assert value("sessions_refused_total") == before + 1
    finally:
        held.release()
        probe.close()
        await server.stop()


async def test_the_phone_bridge_says_it_is_up_while_it_listens_and_nothing_once_stopped(
    tmp_path: Path,
) -> None:
    from tests.media.sip.test_lines import start_server

    server = await start_server(tmp_path, lines=1)
    port = str(server.port)
    try:
        assert REGISTRY.get_sample_value("sip_bridge_up", {"port": port}) == 1.0
    finally:
        await server.stop()
    # Stopped on purpose: no series left to read 0 and fire SipBridgeDown for a deliberate stop.
    assert REGISTRY.get_sample_value("sip_bridge_up", {"port": port}) is None


async def test_a_phone_bridge_whose_listener_dies_says_it_is_down(tmp_path: Path) -> None:
    from tests.media.sip.test_lines import start_server

    server = await start_server(tmp_path, lines=1)
    port = str(server.port)
    try:
        server._udp.close()  # the socket goes away under a running bridge
        await asyncio.sleep(0.05)
        assert REGISTRY.get_sample_value("sip_bridge_up", {"port": port}) == 0.0
    finally:
        await server.stop()


# --- escalation records not written -----------------------------------------------------------


def test_an_unwritable_escalation_folder_shows_on_the_metrics_page(tmp_path: Path) -> None:
    from tests.web.test_clinician_routes import escalation
    from tests.web.test_faults import server_settings
    from web.app import create_app
    from web.product import build_product

    (tmp_path / "escalations").write_text("")  # the folder is a file: every record write fails
    settings = server_settings(tmp_path)
    product = build_product(settings, phone=False)
    with TestClient(create_app(settings, product)) as client:
        assert "escalation_store_failing 0.0" in client.get("/metrics").text
        client.portal.call(product.queue.add, escalation("room-a", Urgency.EMERGENCY))
        client.portal.call(product.queue.flush, 5.0)
        assert "escalation_store_failing 1.0" in client.get("/metrics").text
