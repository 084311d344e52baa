"""The cloud backend against a local server that speaks Gemini's streaming REST API."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import pytest
from aiohttp import web

from agent.backends import create_backend
from agent.backends.base import BrainRequest, Utterance
from agent.backends.gemini import GeminiBackend
from agent.facts import ClinicalFacts
from agent.policy import Assessment, Reason, Urgency
from configs.settings import ConfigError, Settings, load_settings
from tests.agent.backends.support import FakeServer, jpeg, sse

MODEL = "gemini-test"
PII = ("John Smith", "555-123-4567", "john.smith@example.com", "jane.doe@example.org")


def cloud_settings(server: FakeServer, **llm: object) -> Settings:
    return load_settings(
        model_backend="cloud",
        llm={"google_api_key": "test-key", "gemini_model": MODEL, "gemini_base_url": server.url,
             "timeout_s": 1.0, **llm},
    )  # fmt: skip


def chunk(text: str, finish: str | None = None) -> str:
    candidate: dict = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return json.dumps({"candidates": [candidate], "modelVersion": MODEL})


def request_with_pii() -> BrainRequest:
    return BrainRequest(
        patient_text="My name is John Smith, call me at 555-123-4567 or john.smith@example.com. "
        "The mole bled.",
        history=[
            Utterance("agent", "Hello, what's bothering you about your skin today?"),
            Utterance("patient", "A mole on my back. My email is jane.doe@example.org."),
            Utterance("agent", "How long has it been there?"),
        ],
        images=[jpeg()],
        facts=ClinicalFacts(site_words=["back"]),
        assessment=Assessment(Urgency.URGENT, (Reason("bleeding_mole", "a mole that bleeds", "NICE NG12"),)),
    )


async def collect(backend: GeminiBackend, request: BrainRequest) -> list[str]:
    return [piece async for piece in backend.reply(request)]


async def test_streams_the_reply_and_sends_context_frame(fake_server: FakeServer, redaction_ready) -> None:
    pieces = ["I'm sorry it bled. ", "A clinician is joining us now. ", "Is it still bleeding?"]

    async def respond(request: web.Request) -> web.StreamResponse:
        return await sse(request, [chunk(p) for p in pieces[:-1]] + [chunk(pieces[-1], "STOP")])

    fake_server.respond = respond
    backend = create_backend(cloud_settings(fake_server))
    assert isinstance(backend, GeminiBackend)
    request = request_with_pii()
    assert await collect(backend, request) == pieces

    sent = fake_server.requests[0]
    # Gemini's REST path (the SDK's API version: v1 or v1beta), streamed as server-sent events.
    assert re.fullmatch(rf"/v1(beta)?/models/{MODEL}:streamGenerateContent", sent.path)
    assert sent.query.get("alt") == "sse"
    system = sent.body["systemInstruction"]["parts"][0]["text"]
    assert "URGENT" in system and "a mole that bleeds" in system and "site: back." in system
    contents = sent.body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    image = contents[-1]["parts"][0]["inlineData"]
    mime = image.get("mimeType", image.get("mime_type"))  # protobuf JSON takes either spelling
    assert mime == "image/jpeg" and base64.urlsafe_b64decode(image["data"]) == request.images[0].jpeg
    assert "The mole bled." in contents[-1]["parts"][-1]["text"]


async def test_personal_data_never_reaches_the_cloud(fake_server: FakeServer, redaction_ready) -> None:
    async def respond(request: web.Request) -> web.StreamResponse:
        return await sse(request, [chunk("Thank you.", "STOP")])

    fake_server.respond = respond
    backend = GeminiBackend(cloud_settings(fake_server))
    await collect(backend, request_with_pii())
    await collect(backend, request_with_pii())  # a second turn: the history goes again
    for sent in fake_server.requests:
        for secret in PII:
            assert secret not in sent.raw
        assert "<PHONE>" in sent.raw and "<EMAIL>" in sent.raw and "<NAME>" in sent.raw


@pytest.mark.parametrize(("status", "reason"), [(500, "INTERNAL"), (429, "RESOURCE_EXHAUSTED")])
async def test_an_http_error_raises_so_the_pipeline_fails_safe(fake_server: FakeServer, redaction_ready,
                                                               status: int, reason: str) -> None:  # fmt: skip
    async def respond(request: web.Request) -> web.StreamResponse:
        body = {"error": {"code": status, "message": "unavailable", "status": reason}}
        return web.json_response(body, status=status)

    fake_server.respond = respond
    backend = GeminiBackend(cloud_settings(fake_server))
    with pytest.raises(Exception, match=str(status)):
        await collect(backend, request_with_pii())
    assert len(fake_server.requests) == 1  # no retries: the escalation is faster than a retry


async def test_a_server_that_hangs_times_out_with_an_error(fake_server: FakeServer, redaction_ready) -> None:
    async def respond(request: web.Request) -> web.StreamResponse:
        await fake_server.hang()
        return web.Response(status=204)

    fake_server.respond = respond
    backend = GeminiBackend(cloud_settings(fake_server, timeout_s=0.5))
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(collect(backend, request_with_pii()), timeout=10)
    assert time.perf_counter() - started < 3


async def test_a_stream_stalling_after_some_text_raises_too(fake_server: FakeServer, redaction_ready) -> None:
    async def respond(request: web.Request) -> web.StreamResponse:
        return await sse(request, [chunk("Let me think. ")], then=fake_server.hang)

    fake_server.respond = respond
    backend = GeminiBackend(cloud_settings(fake_server, timeout_s=0.5))
    received: list[str] = []
    with pytest.raises(TimeoutError):
        async for piece in backend.reply(request_with_pii()):
            received.append(piece)
    assert received == ["Let me think. "]


def test_a_missing_api_key_fails_at_start_up() -> None:
    settings = load_settings(model_backend="cloud", llm={"google_api_key": None})
    with pytest.raises(ConfigError, match="LLM__GOOGLE_API_KEY"):
        create_backend(settings)
