"""Turn traces without personal data (``pipeline/tracing.py``).

A replayed spoken conversation (speech synthesised with Piper, the whole product's session: VAD,
Whisper, triage, the similar-case search, the mock brain, the safety layer, Piper) is traced into
an in-memory exporter: each patient turn is a span under the session's, with its stages under it,
and no attribute of any span holds a word either side said. Then the exporter the settings
configure: a process built by the composition root sends its spans over OTLP/HTTP to a receiver
on 127.0.0.1 when an endpoint is set, and nothing when none is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent.channel import Channel
from agent.policy import Urgency
from configs.settings import REPO_ROOT, ConfigError, Settings, load_settings
from pipeline.tracing import SpanName
from tools.replay import run_replay

STAGES = {SpanName.END_OF_TURN, SpanName.TRANSCRIPTION, SpanName.BRAIN, SpanName.FIRST_AUDIO}
# The categories a span may name: these words may be said too, and are no one's personal data.
CATEGORIES = {
    "voice",
    "replay",
    "mock",
    "none",
    "image",
    "text",
    *(u.value for u in Urgency),
    *(c.value for c in Channel),
}


@pytest.fixture(scope="module")
def exported() -> InMemorySpanExporter:
    """The process's tracer provider (a test one: no endpoint is configured here) into memory."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z']+", text.lower()) if len(w) >= 3}


def attribute_values(span: ReadableSpan) -> list[str]:
    values = [span.name, *(str(v) for v in (span.attributes or {}).values())]
    for event in span.events:
        values += [event.name, *(str(v) for v in (event.attributes or {}).values())]
    return [v.lower() for v in values]


@pytest.mark.slow
async def test_a_replayed_conversation_is_traced_turn_by_turn_without_a_word_of_it(
    speak: Callable[..., Path], tmp_path: Path, settings: Settings, exported: InMemorySpanExporter
) -> None:
    exported.clear()
    turns = [
        speak("I have a red itchy rash on my left forearm.", lead_s=0.3, tail_s=0.5),
        speak("It started about two weeks ago.", lead_s=0.3, tail_s=0.5),
    ]
    result = await run_replay(turns, tmp_path / "out", settings=settings)
    spans = list(exported.get_finished_spans())

    # Our spans only: pipecat's service spans (which carry transcripts and replies) stay off.
    assert {s.name for s in spans} <= set(SpanName)
    [conversation] = [s for s in spans if s.name == SpanName.CONVERSATION]
    attributes = conversation.attributes or {}
    assert attributes["session.transport"] == "replay" and attributes["brain.backend"] == "mock"
    assert attributes["conversation.turns"] == 2
    assert {s.context.trace_id for s in spans} == {conversation.context.trace_id}  # one trace

    turn_spans = sorted((s for s in spans if s.name == SpanName.TURN), key=lambda s: s.start_time or 0)
    assert [(t.attributes or {})["turn.number"] for t in turn_spans] == [1, 2]
    latencies_s = [ms / 1000 for ms in result["latency_ms"]]
    for turn, latency_s in zip(turn_spans, latencies_s, strict=True):
        assert turn.parent is not None and turn.parent.span_id == conversation.context.span_id
        attrs = turn.attributes or {}
        assert attrs["turn.was_interrupted"] is False and attrs["turn.escalated"] is False
        assert attrs["turn.urgency"] in {u.value for u in Urgency}
        # What the patient waited, as the replay measured it at the transport (within a frame's play-out).
        assert abs(float(attrs["turn.voice_to_voice_s"]) - latency_s) < 0.5
        children = {
            s.name: s for s in spans if s.parent is not None and s.parent.span_id == turn.context.span_id
        }
        assert STAGES <= set(children), f"turn {attrs['turn.number']}: {sorted(children)}"
        brain, first_audio = children[SpanName.BRAIN], children[SpanName.FIRST_AUDIO]
        assert first_audio.start_time == brain.start_time and brain.end_time <= first_audio.end_time
        for stage in children.values():
            assert turn.start_time <= stage.start_time <= stage.end_time
    retrievals = [s for s in spans if s.name == SpanName.RETRIEVAL]
    assert retrievals, "no similar-case search was traced"
    assert all(
        r.parent is not None and r.parent.span_id in {t.context.span_id for t in turn_spans}
        for r in retrievals
    )
    assert all((r.attributes or {})["retrieval.cases"] == 0 for r in retrievals)  # no index in tests

    # No span holds anything said: every attribute of every span, against every word of both sides.
    said = [t["text"] for t in result["turns"]]
    assert any("forearm" in text.lower() for text in said)  # the words to look for were heard
    vocabulary = set().union(*(words(text) for text in said)) - CATEGORIES
    for span in spans:
        for value in attribute_values(span):
            leaked = {w for w in vocabulary if re.search(rf"\b{re.escape(w)}\b", value)}
            assert not leaked, f"{span.name} carries {sorted(leaked)}"
            assert not any(text.lower().strip() in value for text in said if text.strip())


# --- the exporter the settings configure ---------------------------------------------------------

SECRET = "My name is Ann Example and the mole on my back bleeds."

# A process as the server starts one: the composition root builds the product (which installs the
# exporter the settings ask for), one patient turn passes the session's span observer, and the
# process exits (the SDK flushes its batch at exit).
PROCESS = f"""
import asyncio, sys
from pathlib import Path
from pipecat.frames.frames import (
    BotStartedSpeakingFrame, TranscriptionFrame, UserStartedSpeakingFrame, UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from agent.channel import Channel
from configs.settings import load_settings
from pipeline.tracing import TurnSpanObserver
from web.product import build_product

tmp = Path(sys.argv[1])
settings = load_settings(
    escalations_dir=tmp / "escalations", vector_store_dir=tmp / "chroma",
    clinician={{"accounts_file": tmp / "clinicians.json", "audit_log": tmp / "audit.log"}},
)
build_product(settings, phone=False)

async def main():
    spans = TurnSpanObserver("0f3c9a", channel=Channel.AUDIO, backend="mock")
    source, destination = FrameProcessor(), FrameProcessor()
    timeline = [
        (0.3, UserStartedSpeakingFrame()),
        (2.2, VADUserStoppedSpeakingFrame(stop_secs=0.2)),
        (2.6, TranscriptionFrame(text={SECRET!r}, user_id="patient", timestamp="", finalized=True)),
        (2.6, UserStoppedSpeakingFrame()),
        (3.4, BotStartedSpeakingFrame()),
    ]
    for at, frame in timeline:
        pushed = FramePushed(source, destination, frame, FrameDirection.DOWNSTREAM, timestamp=round(at * 1e9))
        await spans.on_push_frame(pushed)
    await spans.cleanup()

asyncio.run(main())
print("done")
"""


class Receiver:
    """An OTLP/HTTP collector's front door on 127.0.0.1: keeps what is posted to it."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, bytes]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posts.append((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    thread.join(timeout=5)


def run_process(tmp_path: Path, **variables: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("OTEL_", "TRACING__"))}
    env.update(variables)
    done = subprocess.run(
        [sys.executable, "-c", PROCESS, str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("variable", ["TRACING__OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_with_an_endpoint_configured_the_spans_reach_the_collector_without_the_words(
    tmp_path: Path, receiver: Receiver, variable: str
) -> None:
    run_process(tmp_path, **{variable: receiver.url})

    assert receiver.posts, "the collector received nothing"
    paths = {path for path, _, _ in receiver.posts}
    assert paths == {"/v1/traces"} and all(kind == "application/x-protobuf" for _, kind, _ in receiver.posts)
    body = b"".join(body for _, _, body in receiver.posts)
    for name in (SpanName.CONVERSATION, SpanName.TURN, SpanName.END_OF_TURN, SpanName.FIRST_AUDIO):
        assert name.value.encode() in body
    assert b"patient-advocacy-agent" in body  # the service's name (TRACING__SERVICE_NAME)
    assert b"turn.voice_to_voice_s" in body and b"0f3c9a" in body  # the session's id, to find its logs
    for word in ("Ann", "Example", "mole", "bleeds"):
        assert word.encode() not in body


def test_without_an_endpoint_nothing_is_sent(tmp_path: Path, receiver: Receiver) -> None:
    run_process(tmp_path, TRACING__OTLP_ENDPOINT="")  # empty, and no OTEL_EXPORTER_OTLP_ENDPOINT
    assert receiver.posts == []


def test_an_endpoint_that_is_not_http_is_refused_at_start_up_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="TRACING__OTLP_ENDPOINT"):
        load_settings(tracing={"otlp_endpoint": "collector:4317"})
