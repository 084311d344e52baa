"""Fail-safe under faults: whatever breaks, the patient hears what happens next and a clinician is called.

Each test breaks one thing (the record, the session's end, the clinician queue, the voice, a
processor, the model) and checks the defined state the session ends in.
"""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test
from prometheus_client import REGISTRY

from agent.backends.mock import InterviewBackend
from agent.channel import Channel
from agent.escalation import EscalationRecord, escalation_message
from agent.policy import Assessment, Urgency
from configs.settings import Settings
from pipeline.escalation import FAILURE_PREFIX, EscalationProcessor
from pipeline.fail_safe import guard
from pipeline.observers import EscalationObserver
from pipeline.safety import safety_processors
from pipeline.safety_audio import prepare_safety_audio, sentences
from pipeline.session import make_tts, run_worker, voice_model
from pipeline.text_session import run_text_session
from tests.pipeline.safety_helpers import lines, patient, spoken, state
from web.product import build_product


class Clinicians:
    """The clinician queue as a session sees it: ``refuse`` makes the next hand-offs raise."""

    def __init__(self, *, refuse: int = 0, takes_s: float = 0.0) -> None:
        self.records: list[EscalationRecord] = []
        self.tries = 0
        self.refuse = refuse
        self.takes_s = takes_s
        self.asked = asyncio.Event()

    async def add(self, record: EscalationRecord) -> None:
        self.tries += 1
        self.asked.set()
        if self.refuse:
            self.refuse -= 1
            raise ConnectionError("queue unavailable")
        await asyncio.sleep(self.takes_s)
        self.records.append(record)


def failures(stage: str) -> float:
    return REGISTRY.get_sample_value("escalation_failures_total", {"stage": stage}) or 0.0


async def until(condition, tries: int = 250) -> None:  # noqa: ANN001 - a zero-argument predicate
    for _ in range(tries):  # 5 s at most
        if condition():
            return
        await asyncio.sleep(0.02)


# --- the record -----------------------------------------------------------------------------


class RecordBreaks(EscalationProcessor):
    """Building the full record fails (the redaction or the summary raising)."""

    def _make_record(self, assessment: Assessment, trigger: str) -> EscalationRecord:
        raise RuntimeError("redaction model unavailable")


async def test_a_record_that_cannot_be_built_goes_out_minimal_and_the_patient_hears_the_escalation() -> None:
    clinicians = Clinicians()
    before = failures("record")
    processor = RecordBreaks(session_id="s1", store=None)
    down, _ = await run_test(
        processor,
        frames_to_send=[patient("My name is John and my mole is bleeding."), state("My mole is bleeding.")],
        observers=[EscalationObserver(clinicians.add)],
    )
    [record] = clinicians.records
    assert (record.session_id, record.level, record.rule_ids) == ("s1", Urgency.URGENT, ["changing_mole"])
    assert record.transcript == [] and record.summary == ""  # nothing unredacted
    assert any("connecting you with a clinician" in line for line in lines(down))
    assert processor.escalation is not None
    assert failures("record") == before + 1


# --- the session ends mid-escalation --------------------------------------------------------


class HangsUpWhileInterrupting(EscalationProcessor):
    """The patient hangs up just as the agent is being stopped for the escalation."""

    worker: PipelineWorker | None = None
    hang_up: asyncio.Task | None = None

    async def broadcast_interruption(self) -> None:
        assert self.worker is not None
        self.hang_up = asyncio.get_running_loop().create_task(self.worker.cancel())
        await asyncio.sleep(5.0)  # cancelled with the session


async def run_cancelled(
    processor: EscalationProcessor, clinicians: Clinicians, cancel_when_asked: bool
) -> None:
    worker = PipelineWorker(
        Pipeline([processor]),
        observers=[EscalationObserver(clinicians.add)],
        idle_timeout_secs=None,
        enable_rtvi=False,
    )
    if isinstance(processor, HangsUpWhileInterrupting):
        processor.worker = worker

    async def drive() -> None:
        await worker.queue_frame(state("My mole is bleeding."))
        if cancel_when_asked:
            await asyncio.wait_for(clinicians.asked.wait(), timeout=5.0)
            await worker.cancel()  # the patient hangs up while the queue takes the record

    driver = asyncio.create_task(drive())
    await asyncio.wait_for(run_worker(worker), timeout=20.0)
    await asyncio.wait_for(driver, timeout=5.0)


async def test_a_patient_hanging_up_mid_escalation_still_reaches_a_clinician() -> None:
    clinicians = Clinicians()
    await run_cancelled(
        HangsUpWhileInterrupting(session_id="s1", store=None), clinicians, cancel_when_asked=False
    )
    assert [r.level for r in clinicians.records] == [Urgency.URGENT]


async def test_a_session_cancelled_while_the_queue_takes_the_record_still_delivers_it() -> None:
    clinicians = Clinicians(takes_s=0.3)
    processor = EscalationProcessor(session_id="s1", store=None)
    await run_cancelled(processor, clinicians, cancel_when_asked=True)
    assert [r.rule_ids for r in clinicians.records] == [["changing_mole"]]
    await until(lambda: processor.escalation is not None)
    assert processor.escalation is not None  # taken after all: the session counts as escalated


# --- the clinician queue fails ----------------------------------------------------------------


async def test_a_queue_that_fails_leaves_the_session_free_to_escalate_again_and_is_counted() -> None:
    clinicians = Clinicians(refuse=1)
    before = failures("handoff")
    processor = EscalationProcessor(session_id="s1", store=None)
    down, _ = await run_test(
        processor,
        frames_to_send=[
            state("My mole is bleeding."),
            SleepFrame(sleep=0.2),
            state("It is still bleeding, my mole is bleeding."),
            SleepFrame(sleep=0.2),
        ],
        observers=[EscalationObserver(clinicians.add)],
    )
    assert clinicians.tries == 2  # the second red flag tried again
    assert [r.rule_ids for r in clinicians.records] == [["changing_mole"]]
    assert processor.escalation is not None
    assert failures("handoff") == before + 1
    assert any("connecting you with a clinician" in line for line in lines(down))  # told even the first time


# --- the voice fails --------------------------------------------------------------------------


class BrokenVoice:
    """Piper's voice failing on every sentence."""

    def synthesize(self, text: str):  # noqa: ANN201 - piper's iterator
        raise RuntimeError("onnxruntime: session lost")


def _said(line: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), LLMTextFrame(line), LLMFullResponseEndFrame()]


async def test_the_emergency_line_is_heard_from_the_audio_kept_at_start_up_when_piper_fails(
    settings: Settings,
) -> None:
    number = "000"  # this test's own kept audio
    settings = settings.model_copy(
        update={"safety": settings.safety.model_copy(update={"emergency_number": number})}
    )
    line = escalation_message(Urgency.EMERGENCY, number)
    kept = prepare_safety_audio(voice_model(settings), number)  # start-up, with the real voice
    assert all(kept.audio_for(sentence, 22050) for sentence in sentences(line))

    tts = make_tts(settings)
    tts._voice = BrokenVoice()  # the voice breaks after start-up
    down, up = await run_test(
        tts,
        frames_to_send=[*_said(line), SleepFrame(sleep=0.5), *_said("Your rash sounds mild.")],
        pipeline_params=PipelineParams(audio_out_sample_rate=16000),
    )
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert audio and {f.sample_rate for f in audio} == {16000}
    heard_s = sum(len(f.audio) for f in audio) / 2 / 16000
    assert heard_s > 5.0  # the whole emergency line, about 10 s of speech; nothing for the other
    assert any(isinstance(f, ErrorFrame) for f in up)  # the failure is still reported


# --- a processor fails ------------------------------------------------------------------------


class CrashingTriage(FrameProcessor):
    """A processor before the safety layer that raises on the patient's words."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            raise ValueError("index out of range")
        await self.push_frame(frame, direction)


async def test_a_processor_raising_mid_session_is_said_and_escalated_never_silent() -> None:
    clinicians = Clinicians()
    session = guard([CrashingTriage(), *safety_processors(session_id="s1", store=None)])
    down, _ = await run_test(
        Pipeline(session),
        frames_to_send=[patient("I have an itchy rash."), SleepFrame(sleep=0.3)],
        observers=[EscalationObserver(clinicians.add)],
    )
    said = spoken(down)
    assert FAILURE_PREFIX in said and "connecting you with a clinician" in said
    [record] = clinicians.records
    assert record.rule_ids == ["system_failure"]


class ModelDownAtStart(InterviewBackend):
    """The model fails as the session starts (before its first words)."""

    def greeting(self) -> str:
        raise ConnectionError("model server unreachable")


async def test_a_model_failing_in_a_session_the_product_builds_is_said_and_reaches_the_queue(
    settings: Settings,
) -> None:
    product = build_product(settings, make_backend=ModelDownAtStart)
    host = product.host
    try:
        processors = host.text_processors(host.context("model-down", Channel.AUDIO))
        result = await asyncio.wait_for(
            run_text_session(
                processors, ["I have an itchy rash."], observers=host.observers(), reply_timeout_s=5.0
            ),
            timeout=60.0,
        )
    finally:
        await product.stop()
    said = " ".join(e.text for e in result.agent_turns)
    assert FAILURE_PREFIX in said and "connecting you with a clinician" in said
    assert result.escalation is not None
    [record] = product.queue.list()  # the clinician console sees it
    assert record.rule_ids == ["system_failure"]
