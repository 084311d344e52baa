"""The model's second opinion: parsing its answer, and each checker against a local fake server or model."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web

from agent.backends.base import Utterance
from agent.backends.medgemma import load_model, resolve_model_dir
from agent.policy import Urgency
from agent.second_opinion import (
    INSTRUCTION,
    GeminiChecker,
    LocalChecker,
    OpenAIChecker,
    RedFlagChecker,
    SecondOpinion,
    assessment_from,
    create_red_flag_checker,
    parse_opinion,
)
from configs.settings import ConfigError, Settings, load_settings
from tests.agent.backends import conftest as backend_fixtures
from tests.agent.backends.support import FakeServer

# The backend tests' fixtures: a fake model server, Presidio built once, the tiny random MedGemma.
fake_server = backend_fixtures.fake_server
redaction_ready = backend_fixtures.redaction_ready
tiny_medgemma_dir = backend_fixtures.tiny_medgemma_dir

MODEL = "test-model"
SAID = "I'm John Smith, 555-123-4567. My lips and tongue are swelling up since I took the new tablets."
HISTORY = [Utterance("agent", "What's bothering you?"), Utterance("patient", "A rash on my arms.")]
RED = '{"red_flag": true, "level": "emergency", "reason": "lips and tongue swelling"}'
CLEAR = '{"red_flag": false, "level": null, "reason": "itchy rash, no warning signs"}'


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RED, SecondOpinion(True, Urgency.EMERGENCY, "lips and tongue swelling")),
        (CLEAR, SecondOpinion(False, None, "itchy rash, no warning signs")),
        (f"```json\n{RED}\n```", SecondOpinion(True, Urgency.EMERGENCY, "lips and tongue swelling")),
        (f"My answer:\n{CLEAR}\nThanks {{}}", SecondOpinion(False, None, "itchy rash, no warning signs")),
        ('{"red_flag": true, "level": "Urgent"}', SecondOpinion(True, Urgency.URGENT, "")),
        # Contradictions go to the clinician: a red flag with no level is urgent, a level is a red flag.
        ('{"red_flag": true, "level": null, "reason": "x"}', SecondOpinion(True, Urgency.URGENT, "x")),
        ('{"red_flag": false, "level": "emergency"}', SecondOpinion(True, Urgency.EMERGENCY, "")),
        ('{"red_flag": false}', SecondOpinion(False, None, "")),
    ],
)  # fmt: skip
def test_a_well_formed_answer_is_read(text: str, expected: SecondOpinion) -> None:
    assert parse_opinion(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no JSON object"),
        ("The patient should see a doctor.", "no JSON object"),
        ('{"red_flag": true, "level": "emergency"', "not JSON"),
        ('{"a": ' + "[" * 100_000, "not JSON"),  # nested past the recursion limit
        ("[1, 2]", "no JSON object"),
        ('{"red_flag": "yes", "level": "urgent", "reason": "x"}', "red_flag is not true or false"),
        ('{"red_flag": 1, "level": "urgent", "reason": "x"}', "red_flag is not true or false"),
        ('{"level": "urgent", "reason": "x"}', "red_flag is not true or false"),
        ('{"red_flag": true, "level": "soon", "reason": "x"}', "unknown level"),
        ('{"red_flag": true, "level": 2, "reason": "x"}', "unknown level"),
        ('{"red_flag": true, "level": "urgent", "reason": ["x"]}', "reason is not text"),
    ],
)
def test_a_malformed_answer_is_a_failure_not_an_opinion(text: str, why: str) -> None:
    opinion = parse_opinion(text)
    assert opinion == SecondOpinion(False, None, "", failed=f"unparseable: {why}")


def test_a_long_reason_is_cut_and_tidied() -> None:
    opinion = parse_opinion(json.dumps({"red_flag": True, "level": "urgent", "reason": "a  b\n" * 200}))
    assert len(opinion.reason) == 200 and "\n" not in opinion.reason and "  " not in opinion.reason


def test_a_red_flag_opinion_becomes_an_escalating_assessment() -> None:
    assessment = assessment_from(Urgency.URGENT, "a bleeding mole")
    assert assessment.escalate and assessment.confidence == 1.0
    assert assessment.rule_ids == ["model_second_opinion"]
    assert assessment.reasons[0].description == "the model's second opinion: a bleeding mole"


def test_the_instruction_asks_for_json_and_names_the_guidance() -> None:
    assert '"red_flag"' in INSTRUCTION and "ONLY a JSON object" in INSTRUCTION
    for guidance in ("NG51", "NG143", "NG12", "NG19", "NG225", "meningococcal", "Stevens-Johnson"):
        assert guidance in INSTRUCTION


# --- choosing a checker -----------------------------------------------------------------------


def test_the_mock_backend_gets_no_checker() -> None:
    assert create_red_flag_checker(load_settings(model_backend="mock")) is None


def test_a_checker_without_its_settings_fails_at_start_up() -> None:
    with pytest.raises(ConfigError, match="LLM__OPENAI_BASE_URL"):
        create_red_flag_checker(load_settings(model_backend="openai", llm={"openai_base_url": None}))
    with pytest.raises(ConfigError, match="LLM__GOOGLE_API_KEY"):
        create_red_flag_checker(load_settings(model_backend="cloud", llm={"google_api_key": None}))


# --- the OpenAI-compatible server -----------------------------------------------------------


def openai_settings(server: FakeServer, timeout_s: float = 1.0) -> Settings:
    return load_settings(
        model_backend="openai",
        llm={"openai_base_url": f"{server.url}/v1", "openai_model": MODEL, "timeout_s": timeout_s},
    )


def completion(content: str) -> dict:
    message = {"role": "assistant", "content": content}
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip


def gemini_settings(server: FakeServer, timeout_s: float = 1.0) -> Settings:
    return load_settings(
        model_backend="cloud",
        llm={"google_api_key": "test-key", "gemini_model": MODEL, "gemini_base_url": server.url,
             "timeout_s": timeout_s},
    )  # fmt: skip


def gemini_answer(text: str) -> dict:
    candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}
    return {"candidates": [candidate], "modelVersion": MODEL}


# Each remote checker, with its settings and how its server wraps an answer.
REMOTES = {
    "openai": (openai_settings, completion, OpenAIChecker),
    "cloud": (gemini_settings, gemini_answer, GeminiChecker),
}


def answering(wrap, text: str):
    async def respond(request: web.Request) -> web.StreamResponse:
        return web.json_response(wrap(text))

    return respond


@pytest.mark.parametrize("backend", list(REMOTES))
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (RED, SecondOpinion(True, Urgency.EMERGENCY, "lips and tongue swelling")),
        (CLEAR, SecondOpinion(False, None, "itchy rash, no warning signs")),
        ("I think it is probably fine", SecondOpinion.failure("unparseable: no JSON object")),
    ],
)
async def test_a_remote_checker_reads_the_answer(
    fake_server: FakeServer, redaction_ready, backend: str, answer: str, expected: SecondOpinion
) -> None:
    settings_for, wrap, kind = REMOTES[backend]
    fake_server.respond = answering(wrap, answer)
    checker = create_red_flag_checker(settings_for(fake_server))
    assert isinstance(checker, kind)
    assert await checker.check(SAID, HISTORY) == expected
    assert len(fake_server.requests) == 1


async def test_the_openai_request_is_one_schema_constrained_redacted_completion(
    fake_server: FakeServer, redaction_ready
) -> None:
    fake_server.respond = answering(completion, RED)
    await OpenAIChecker(openai_settings(fake_server)).check(SAID, HISTORY)
    sent = fake_server.requests[0]
    assert sent.path == "/v1/chat/completions"
    body = sent.body
    assert not body.get("stream") and body["model"] == MODEL and body["temperature"] == 0
    schema = body["response_format"]["json_schema"]["schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert schema["required"] == ["red_flag", "level", "reason"]
    system, user = body["messages"]
    assert system == {"role": "system", "content": INSTRUCTION}
    assert "Patient: A rash on my arms." in user["content"] and "tongue are swelling" in user["content"]
    assert "John Smith" not in sent.raw and "555-123-4567" not in sent.raw
    assert "<NAME>" in user["content"]  # redacted, not dropped


async def test_the_gemini_request_asks_for_json_with_a_schema_redacted(
    fake_server: FakeServer, redaction_ready
) -> None:
    fake_server.respond = answering(gemini_answer, CLEAR)
    await GeminiChecker(gemini_settings(fake_server)).check(SAID, HISTORY)
    sent = fake_server.requests[0]
    assert re.fullmatch(rf"/v1(beta)?/models/{MODEL}:generateContent", sent.path)  # not streamed
    config = sent.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["required"] == ["red_flag", "level", "reason"]
    assert sent.body["systemInstruction"]["parts"][0]["text"] == INSTRUCTION
    assert "tongue are swelling" in sent.body["contents"][0]["parts"][0]["text"]
    assert "John Smith" not in sent.raw and "555-123-4567" not in sent.raw


@pytest.mark.parametrize("backend", list(REMOTES))
async def test_an_http_error_is_a_failed_opinion(
    fake_server: FakeServer, redaction_ready, backend: str
) -> None:
    async def respond(request: web.Request) -> web.StreamResponse:
        error = {"error": {"code": 500, "message": "CUDA out of memory", "status": "INTERNAL"}}
        return web.json_response(error, status=500)

    settings_for, _, kind = REMOTES[backend]
    fake_server.respond = respond
    opinion = await kind(settings_for(fake_server)).check(SAID, HISTORY)
    assert not opinion.red_flag and opinion.level is None
    assert opinion.failed.endswith("500") and "Error" in opinion.failed
    assert len(fake_server.requests) == 1  # no retries


@pytest.mark.parametrize("backend", list(REMOTES))
async def test_a_server_that_hangs_is_a_timeout(
    fake_server: FakeServer, redaction_ready, backend: str
) -> None:
    async def respond(request: web.Request) -> web.StreamResponse:
        await fake_server.hang()
        return web.Response(status=204)

    settings_for, _, kind = REMOTES[backend]
    fake_server.respond = respond
    started = time.perf_counter()
    opinion = await kind(settings_for(fake_server, timeout_s=0.5)).check(SAID, HISTORY)
    assert opinion == SecondOpinion.failure("timeout")
    assert time.perf_counter() - started < 3


async def test_nothing_listening_is_a_failed_opinion(redaction_ready) -> None:
    settings = load_settings(model_backend="openai", llm={"openai_base_url": "http://127.0.0.1:9/v1"})
    opinion = await OpenAIChecker(settings).check(SAID, HISTORY)
    assert opinion.failed == "APIConnectionError"


async def test_a_checker_that_raises_anything_gives_a_failed_opinion() -> None:
    class Broken(RedFlagChecker):
        async def _ask(self, patient_text: str, history: list[Utterance]) -> str:
            raise KeyError(patient_text)  # the message would carry patient text

    opinion = await Broken(load_settings()).check(SAID, [])
    assert opinion == SecondOpinion.failure("KeyError")


# --- local MedGemma ---------------------------------------------------------------------------


def local_settings(model_dir: Path, timeout_s: float = 60.0) -> Settings:
    return load_settings(
        model_backend="local",
        llm={"medgemma_model_id": str(model_dir), "device": "cpu", "timeout_s": timeout_s},
    )


async def test_the_tiny_random_model_gives_an_unparseable_opinion(tiny_medgemma_dir: Path) -> None:
    settings = local_settings(tiny_medgemma_dir)
    checker = create_red_flag_checker(settings)
    assert isinstance(checker, LocalChecker)
    opinion = await checker.check(SAID, HISTORY)
    assert opinion.failed.startswith("unparseable") and not opinion.red_flag


async def test_a_local_check_that_times_out_while_queued_never_runs(
    tiny_medgemma_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = local_settings(tiny_medgemma_dir, timeout_s=0.3)
    model = load_model(resolve_model_dir(settings), "cpu")
    checker = LocalChecker(settings)
    assert checker._model is model  # the backend's model, not a second copy
    generations: list[object] = []
    monkeypatch.setattr(model, "generate", lambda *args: generations.append(args))
    gate = threading.Event()
    model.executor.submit(gate.wait, 10)  # a long reply holds the one generation thread
    try:
        assert await checker.check(SAID, HISTORY) == SecondOpinion.failure("timeout")
    finally:
        gate.set()
    assert model.executor.submit(lambda: "free").result(timeout=10) == "free"
    assert generations == []  # the queued check was withdrawn, not run late
