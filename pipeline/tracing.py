"""Traces of a spoken session without personal data: a span per patient turn, a child per stage.

Spans (OpenTelemetry), one trace per session::

    conversation    the session: conversation.id (its random id, as in the logs), session.channel,
      |             session.transport, brain.backend, conversation.turns
      turn          the patient's turn start to the agent's first audio after it: turn.number,
        |           turn.voice_to_voice_s, turn.was_interrupted, turn.urgency, turn.escalated
        end_of_turn     the patient's speech end (the VAD's) to the turn closed
        transcription   the turn closed to its final transcription (0 s when the text was there)
        retrieval       the final clinical state to the similar cases: retrieval.cases,
                        retrieval.matched_on (searched beside the reply: it may outlast its
                        turn; a search that timed out or failed has no span, its log line says)
        brain           the final transcription (or the kept draft's start, with preemptive
                        generation) to the brain's first text: brain.failed
        first_audio     the final transcription to the agent's first audio (the brain, the spoken
                        guard and Piper: the brain span lies inside it)

The stages are those of ``stage_latency_seconds`` on ``/metrics`` (``pipeline/turn_observers.py``),
timed the same way: on the pipeline clock at each push (``FramePushed.timestamp``), not when the
observer runs, and placed on the wall clock by one offset taken at the session's first frame.

Why our own spans and not pipecat's (``PipelineWorker(enable_tracing=True)``): pipecat's service
spans put what was said into attributes (the STT span's ``transcript``, the LLM span's ``input``
and ``output``, the TTS span's ``text``: ``pipecat/utils/tracing/service_attributes.py``). A span
processor that strips them before export would be a deny list that any pipecat upgrade can
quietly outgrow, and our transcriber and brain are processors of our own, so pipecat's tracing
would add only Piper's span, with the spoken sentence in it. So the worker's tracing stays off and
this observer builds the spans from the frames, with attributes from a fixed list: numbers,
booleans and our own categories (urgency, channel, backend, the retrieval's index label). What is
taken from pipecat is its shape and names (``TurnTraceObserver``'s ``conversation`` and ``turn``
spans, ``conversation.id``, ``turn.number``, ``turn.was_interrupted``), so views built for pipecat
traces read these. ``tests/pipeline/test_tracing.py`` checks every attribute of every span of a
replayed conversation against the words said.

The tracer provider is set up once per process by the composition root (``install_tracing``,
called from ``web/product.py``); without an endpoint nothing is installed and the spans are
OpenTelemetry's no-ops.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    Frame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from agent.channel import Channel
from agent.policy import Urgency
from configs.settings import Settings
from pipeline.brain import BrainProcessor
from pipeline.frames import (
    BrainFailedFrame,
    ClinicalStateFrame,
    EscalationFrame,
    PreemptiveTurnFrame,
    PreemptiveTurnSettledFrame,
    SimilarCasesFrame,
)
from pipeline.retrieval import matched_on

log = logging.getLogger(__name__)
TRACER_NAME = "patient_advocacy_agent.turns"
NS = 1_000_000_000


class SpanName(StrEnum):
    """The spans' names, as a trace viewer lists them."""

    CONVERSATION = "conversation"
    TURN = "turn"
    END_OF_TURN = "end_of_turn"
    TRANSCRIPTION = "transcription"
    RETRIEVAL = "retrieval"
    BRAIN = "brain"
    FIRST_AUDIO = "first_audio"


_installed: TracerProvider | None = None


def otlp_endpoint(settings: Settings) -> str | None:
    """The collector's base URL: ``TRACING__OTLP_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    fallback = (settings.otel_exporter_otlp_endpoint or "").strip() or None
    return settings.tracing.otlp_endpoint or fallback


def tracer_provider(settings: Settings) -> TracerProvider | None:
    """A provider that sends spans to the configured collector in batches; None when none is set.

    Batched in a thread of its own: a collector that is slow or down costs a session nothing (the
    exporter logs its failures, and spans beyond the batch queue are dropped).
    """
    endpoint = otlp_endpoint(settings)
    if endpoint is None:
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.tracing.service_name}))
    exporter = OTLPSpanExporter(
        endpoint=f"{endpoint.rstrip('/')}/v1/traces", timeout=settings.tracing.export_timeout_s
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def install_tracing(settings: Settings) -> TracerProvider | None:
    """Make the configured provider the process's, once (later calls return the first one).

    The SDK flushes and shuts it down when the process exits.
    """
    global _installed
    if _installed is None:
        _installed = tracer_provider(settings)
        if _installed is not None:
            trace.set_tracer_provider(_installed)
            log.info("traces exported over OTLP to %s", otlp_endpoint(settings))
    return _installed


@dataclass
class _Turn:
    """One patient turn's moments (pipeline clock, ns) and categories, as its frames pass."""

    number: int
    span: trace.Span
    start_ns: int
    speech_end_ns: int | None = None
    closed_ns: int | None = None  # the UserStoppedSpeakingFrame
    final_ns: int | None = None  # the final TranscriptionFrame
    draft_ns: int | None = None  # a preemptive draft of this turn began
    draft_text_ns: int | None = None  # the brain's first text for that draft
    brain_done: bool = False
    audio_ns: int | None = None
    retrieval_ns: int | None = None
    urgency: Urgency | None = None
    escalated: bool = False


class TurnSpanObserver(BaseObserver):
    """Opens and closes a session's spans from its frames (see the module's docstring)."""

    def __init__(
        self,
        session_id: str,
        *,
        channel: Channel,
        transport: StrEnum | None = None,
        backend: str = "",
        provider: trace.TracerProvider | None = None,
    ) -> None:
        """``provider``: None for the process's (``install_tracing``; OpenTelemetry's no-op without one)."""
        super().__init__(observe_every_push=False)
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=provider)
        self._attributes: dict[str, str] = {
            "conversation.id": session_id,
            "conversation.type": "voice",
            "session.channel": channel.value,
            "brain.backend": backend,
        }
        if transport is not None:
            self._attributes["session.transport"] = transport.value
        self._offset_ns: int | None = None  # wall clock minus pipeline clock
        self._last_ns = 0
        self._conversation: trace.Span | None = None
        self._turn: _Turn | None = None
        self._searching: _Turn | None = None  # the latest turn whose similar cases are awaited
        self._turns = 0
        self._recent: deque[int] = deque(maxlen=64)  # a broadcast pair's first copy

    # --- frames --------------------------------------------------------------------------------

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if not self._first_of_pair(frame):
            return
        at = data.timestamp
        if self._offset_ns is None:
            self._offset_ns = time.time_ns() - at
            self._conversation = self._tracer.start_span(
                SpanName.CONVERSATION, start_time=self._wall(at), attributes=self._attributes
            )
        self._last_ns = max(self._last_ns, at)
        if isinstance(frame, UserStartedSpeakingFrame):
            self._start_turn(at)
            return
        if isinstance(frame, SimilarCasesFrame):
            self._on_cases(frame, at)
            return
        turn = self._turn
        if turn is None:
            return  # the greeting, and anything before the patient's first turn
        if isinstance(frame, VADUserStartedSpeakingFrame):
            turn.speech_end_ns = None  # the patient speaks again: the speech end is still to come
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            turn.speech_end_ns = at - int(frame.stop_secs * NS)
        elif isinstance(frame, TranscriptionFrame):
            if frame.finalized and turn.final_ns is None:
                self._on_final(turn, at)
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._on_closed(turn, at)
        elif isinstance(frame, PreemptiveTurnFrame):
            turn.draft_ns, turn.draft_text_ns = at, None
        elif isinstance(frame, PreemptiveTurnSettledFrame):
            if not frame.kept:
                turn.draft_ns = turn.draft_text_ns = None
        elif isinstance(frame, LLMTextFrame) and isinstance(data.source, BrainProcessor):
            self._on_brain_text(turn, at)
        elif isinstance(frame, BrainFailedFrame):
            if turn.final_ns is not None and not turn.brain_done:
                self._stage(turn, SpanName.BRAIN, turn.final_ns, at, {"brain.failed": True})
                turn.brain_done = True
        elif isinstance(frame, ClinicalStateFrame):
            self._on_state(turn, frame, at, data.direction)
        elif isinstance(frame, EscalationFrame):
            turn.escalated = True
        elif isinstance(frame, (TTSAudioRawFrame, BotStartedSpeakingFrame)):
            self._on_audio(turn, at)

    def _first_of_pair(self, frame: Frame) -> bool:
        """A broadcast frame comes as a pair (downstream and upstream): only its first copy counts."""
        sibling = getattr(frame, "broadcast_sibling_id", None)
        if sibling is not None and sibling in self._recent:
            return False
        self._recent.append(frame.id)
        return True

    def _start_turn(self, at: int) -> None:
        if self._turn is not None:  # the patient went on before the agent's voice: cut short
            self._end_turn(self._turn, at, interrupted=self._turn.audio_ns is None)
        self._turns += 1
        span = self._tracer.start_span(
            SpanName.TURN,
            context=trace.set_span_in_context(self._conversation) if self._conversation else None,
            start_time=self._wall(at),
            attributes={"turn.number": self._turns},
        )
        self._turn = _Turn(number=self._turns, span=span, start_ns=at)

    def _on_final(self, turn: _Turn, at: int) -> None:
        turn.final_ns = at
        if turn.closed_ns is not None:  # the turn ended first: the text came after it
            self._stage(turn, SpanName.TRANSCRIPTION, turn.closed_ns, at)
        if turn.draft_text_ns is not None and turn.draft_ns is not None:  # a kept draft's reply
            self._stage(turn, SpanName.BRAIN, turn.draft_ns, turn.draft_text_ns, {"brain.failed": False})
            turn.brain_done = True

    def _on_closed(self, turn: _Turn, at: int) -> None:
        if turn.closed_ns is not None:
            return
        turn.closed_ns = at
        if turn.speech_end_ns is not None:
            closed = at if turn.final_ns is None else min(turn.final_ns, at)
            self._stage(turn, SpanName.END_OF_TURN, turn.speech_end_ns, closed)
        if turn.final_ns is not None:  # the text was there when the turn ended
            self._stage(turn, SpanName.TRANSCRIPTION, turn.final_ns, turn.final_ns)

    def _on_brain_text(self, turn: _Turn, at: int) -> None:
        if turn.brain_done:
            return
        if turn.final_ns is None:
            if turn.draft_ns is not None and turn.draft_text_ns is None:
                turn.draft_text_ns = at  # a draft's reply: counted if the draft is kept
            return
        self._stage(turn, SpanName.BRAIN, turn.final_ns, at, {"brain.failed": False})
        turn.brain_done = True

    def _on_state(self, turn: _Turn, frame: ClinicalStateFrame, at: int, direction: FrameDirection) -> None:
        if not frame.final or direction != FrameDirection.DOWNSTREAM:
            return
        if frame.assessment is not None:
            level = frame.assessment.level
            if turn.urgency is None or level.rank < turn.urgency.rank:
                turn.urgency = level
        if not frame.revised and turn.retrieval_ns is None:
            turn.retrieval_ns = at  # the retrieval processor (if any) forwards it and searches
            self._searching = turn

    def _on_cases(self, frame: SimilarCasesFrame, at: int) -> None:
        turn, self._searching = self._searching, None
        if turn is None or turn.retrieval_ns is None:
            return
        attributes = {"retrieval.cases": len(frame.cases), "retrieval.matched_on": matched_on(frame.cases)}
        self._stage(turn, SpanName.RETRIEVAL, turn.retrieval_ns, at, attributes)

    def _on_audio(self, turn: _Turn, at: int) -> None:
        due = turn.final_ns if turn.final_ns is not None else turn.closed_ns  # no words: "pardon?"
        if turn.audio_ns is not None or due is None:
            return  # a draft's audio is held back until the turn is over; only the first counts
        turn.audio_ns = at
        self._stage(turn, SpanName.FIRST_AUDIO, due, at)
        if turn.speech_end_ns is not None:
            turn.span.set_attribute("turn.voice_to_voice_s", max(0, at - turn.speech_end_ns) / NS)
        self._end_turn(turn, at, interrupted=False)

    # --- spans ---------------------------------------------------------------------------------

    def _wall(self, at: int) -> int:
        return at + (self._offset_ns or 0)

    def _stage(
        self,
        turn: _Turn,
        name: SpanName,
        start: int,
        end: int,
        attributes: dict[str, bool | int | str] | None = None,
    ) -> None:
        span = self._tracer.start_span(
            name,
            context=trace.set_span_in_context(turn.span),
            start_time=self._wall(start),
            attributes={"turn.number": turn.number, **(attributes or {})},
        )
        span.end(end_time=self._wall(max(start, end)))

    def _end_turn(self, turn: _Turn, at: int, *, interrupted: bool, session_end: bool = False) -> None:
        span = turn.span
        span.set_attribute("turn.was_interrupted", interrupted)
        span.set_attribute("turn.escalated", turn.escalated)
        if turn.urgency is not None:
            span.set_attribute("turn.urgency", turn.urgency.value)
        if session_end:
            span.set_attribute("turn.ended_by_conversation_end", True)
        span.end(end_time=self._wall(max(at, turn.start_ns)))
        if self._turn is turn:
            self._turn = None

    async def cleanup(self) -> None:
        """The session is over: its open turn and the conversation end at its last frame."""
        await super().cleanup()
        turn = self._turn
        if turn is not None:
            self._end_turn(turn, self._last_ns, interrupted=turn.audio_ns is None, session_end=True)
        if self._conversation is not None:
            self._conversation.set_attribute("conversation.turns", self._turns)
            self._conversation.end(end_time=self._wall(self._last_ns))
            self._conversation = None
