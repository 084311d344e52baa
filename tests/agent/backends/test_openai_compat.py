"""The OpenAI-compatible backend (vLLM, TGI, llama.cpp server) against a local chat completions server."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import openai
import pytest
from aiohttp import web

from agent.backends import create_backend
from agent.backends.base import BrainRequest, Utterance
from agent.backends.openai_compat import OpenAICompatibleBackend
from agent.policy import Assessment, Reason, Urgency
from configs.settings import ConfigError, Settings, load_settings
from tests.agent.backends.support import FakeServer, jpeg, sse

MODEL = "google/medgemma-4b-it"


def openai_settings(server: FakeServer, **llm: object) -> Settings:
    return load_settings(
        model_backend="openai",
        llm={"openai_base_url": f"{server.url}/v1", "openai_model": MODEL, "openai_api_key": "sk-local",
             "timeout_s": 1.0, "max_new_tokens": 80, **llm},
    )  # fmt: skip


def delta(content: str | None, *, role: str | None = None, finish: str | None = None) -> str:
    piece = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    choice = {"index": 0, "delta": piece, "finish_reason": finish}
    return json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                       "choices": [choice]})  # fmt: skip


def request() -> BrainRequest:
    return BrainRequest(
        patient_text="This is Maria Lopez, my number is 555-987-6543. The rash is spreading.",
        history=[Utterance("agent", "Hello, what's bothering you?"), Utterance("patient", "A rash.")],
        images=[jpeg()],
        assessment=Assessment(Urgency.SOON, (Reason("spreading_rash", "a rash that is spreading", "NICE"),)),
    )


async def collect(backend: OpenAICompatibleBackend, turn: BrainRequest) -> list[str]:
    return [piece async for piece in backend.reply(turn)]


async def test_streams_chat_completion_chunks(fake_server: FakeServer, redaction_ready) -> None:
    async def respond(http: web.Request) -> web.StreamResponse:
        events = [delta("", role="assistant"), delta("I see. "), delta("How big is it now?"),
                  delta(None, finish="stop"), "[DONE]"]  # fmt: skip
        return await sse(http, events)

    fake_server.respond = respond
    backend = create_backend(openai_settings(fake_server))
    assert isinstance(backend, OpenAICompatibleBackend)
    turn = request()
    assert await collect(backend, turn) == ["I see. ", "How big is it now?"]

    sent = fake_server.requests[0]
    assert sent.path == "/v1/chat/completions"
    body = sent.body
    assert body["stream"] is True and body["model"] == MODEL and body["max_tokens"] == 80
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]  # the patient's two turns in a row merge
    system = body["messages"][0]["content"]
    assert "SOON" in system and "a rash that is spreading" in system
    image, text = body["messages"][-1]["content"]
    url = image["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == turn.images[0].jpeg
    assert text["text"].startswith("A rash.\n") and "The rash is spreading." in text["text"]
    # Personal data is redacted before it leaves the machine.
    assert "555-987-6543" not in sent.raw and "Maria Lopez" not in sent.raw
    assert "<PHONE>" in sent.raw and "<NAME>" in sent.raw


async def test_a_server_error_raises(fake_server: FakeServer, redaction_ready) -> None:
    async def respond(http: web.Request) -> web.StreamResponse:
        error = {"error": {"message": "CUDA out of memory", "type": "server_error"}}
        return web.json_response(error, status=500)

    fake_server.respond = respond
    backend = OpenAICompatibleBackend(openai_settings(fake_server))
    with pytest.raises(openai.InternalServerError):
        await collect(backend, request())
    assert len(fake_server.requests) == 1  # no retries


async def test_a_stream_that_stalls_raises_a_timeout(fake_server: FakeServer, redaction_ready) -> None:
    async def respond(http: web.Request) -> web.StreamResponse:
        return await sse(http, [delta("One moment. ")], then=fake_server.hang)

    fake_server.respond = respond
    backend = OpenAICompatibleBackend(openai_settings(fake_server, timeout_s=0.5))
    received: list[str] = []
    started = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        async with asyncio.timeout(10):
            async for piece in backend.reply(request()):
                received.append(piece)
    assert received == ["One moment. "] and time.perf_counter() - started < 3


async def test_nothing_listening_raises_a_connection_error(redaction_ready) -> None:
    settings = load_settings(model_backend="openai", llm={"openai_base_url": "http://127.0.0.1:9/v1"})
    with pytest.raises(openai.APIConnectionError):
        await collect(OpenAICompatibleBackend(settings), request())


def test_a_missing_base_url_fails_at_start_up() -> None:
    with pytest.raises(ConfigError, match="LLM__OPENAI_BASE_URL"):
        create_backend(load_settings(model_backend="openai", llm={"openai_base_url": None}))
