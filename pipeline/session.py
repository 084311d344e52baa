"""Assembling one patient session: the processors, in order, around any transport.

    transport in -> Silero VAD -> incremental Whisper -> camera sampler -> triage
                 -> [retrieval] -> case evidence -> brain -> [second opinion]
                 -> escalation -> clinician presence -> spoken guard -> Piper TTS -> reply gate
                 -> transport out

The reply gate holds the voice of a reply made before the patient's turn was known to be over
(preemptive generation, ``pipeline/reply_gate.py``) until the silence confirms it.

Every processor's errors escalate the session (``pipeline/fail_safe.py``), and the voice plays the
safety lines' audio kept at start-up when Piper fails on one (``pipeline/safety_audio.py``).

With the cloud voice (``pipeline/cloud_voice.py``: MODEL_BACKEND=cloud and a Google project),
Google's speech-to-text stands in for Whisper behind the same turn-taking, and Google's
text-to-speech for Piper with the same kept audio; this module is the one place that decides.

The same assembly serves the browser (WebRTC), phone calls (SIP), replays (files) and, from
triage to the spoken guard, the evaluation's text sessions. The composition root
(``web/product.py``) is what calls it, for every entry point.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_transport import BaseTransport
from pipecat.workers.runner import WorkerRunner

from agent.backends.base import BrainBackend
from agent.channel import Channel
from agent.escalation import EscalationStore
from agent.interview import resumed_greeting
from agent.policy import default_policy
from agent.second_opinion import create_red_flag_checker
from agent.semantic_flags import SemanticRedFlags
from configs.settings import Settings
from pipeline.brain import BrainProcessor
from pipeline.camera import CameraSampler
from pipeline.case_evidence import CaseEvidenceProcessor
from pipeline.cloud_voice import cloud_voice
from pipeline.fail_safe import guard
from pipeline.heap import freeze_startup_heap
from pipeline.incremental_stt import IncrementalWhisperSTT, SpeechToText
from pipeline.reply_gate import ReplyGate
from pipeline.resume import ResumePoint
from pipeline.safety import safety_processors
from pipeline.safety_audio import SafePiperTTSService, kept_safety_audio, prepare_safety_audio
from pipeline.second_opinion import SecondOpinionProcessor
from pipeline.shared_models import SharedSileroVAD, SharedSmartTurn, silero_session, smart_turn_session
from pipeline.transcriber import Transcriber, shared_transcriber
from pipeline.triage import TriageProcessor

if TYPE_CHECKING:
    from rag.retrieval import CaseSearch

log = logging.getLogger(__name__)
INPUT_RATE = 16000
VAD_STOP_S = 0.2


@dataclass(frozen=True)
class SessionContext:
    """What a session needs besides the settings and the brain."""

    session_id: str
    channel: Channel = Channel.VIDEO
    retriever: CaseSearch | None = None  # similar SCIN cases (rag.retrieval.Retriever)
    # A clinician queue stores the session's escalation records (EscalationObserver): the
    # escalation processor then stores none itself, so each record is stored once.
    escalations_queued: bool = False
    # Where a session cut off stood, when this one resumes it (pipeline/resume.py).
    resume: ResumePoint | None = None


def voice_model(settings: Settings) -> Path:
    """The Piper voice the agent speaks with."""
    return settings.path(settings.voice.piper_voices_dir) / f"{settings.voice.piper_voice}.onnx"


def make_tts(settings: Settings) -> TTSService:
    """Piper with the process's shared voice (``pipeline/shared_models.py``), or Google's with the
    cloud voice, with the safety lines' audio kept at start-up played if it fails to say one."""
    kept = kept_safety_audio(voice_model(settings), settings.safety.emergency_number)
    cloud = cloud_voice(settings)
    if cloud is not None:
        return cloud.tts(kept)
    return SafePiperTTSService(kept=kept, voice_model=voice_model(settings))


def make_vad() -> VADProcessor:
    """Silero on the process's shared ONNX session, this session's speech state its own."""
    return VADProcessor(vad_analyzer=SharedSileroVAD(params=VADParams(stop_secs=VAD_STOP_S)))


def whisper_dir(settings: Settings) -> Path:
    return settings.path(settings.models_dir) / f"whisper-{settings.voice.whisper_model_size}"


@lru_cache(maxsize=2)
def _semantic_red_flags(model_dir: Path, device: str) -> SemanticRedFlags | None:
    from rag.text_encoder import TextEncoder, text_model_problem

    problem = text_model_problem(model_dir)
    if problem:
        log.error("red flags by meaning are off: %s", problem)
        return None
    encoder = TextEncoder(model_dir, device)
    return SemanticRedFlags(lambda texts: encoder.encode(texts, threads=1), default_policy())


def make_triage(settings: Settings, resume: ResumePoint | None = None) -> TriageProcessor:
    """The triage processor with the safety readings the settings ask for (shared models), from
    the facts of the session it resumes, if any."""
    semantic = None
    if settings.safety.semantic_detector:
        semantic = _semantic_red_flags(
            settings.path(settings.embedding.text_model_dir), settings.embedding.device
        )
    return TriageProcessor(
        sounds_like=settings.safety.sounds_like,
        semantic=semantic,
        facts=resume.facts if resume else None,
    )


def thinking_processors(
    settings: Settings, backend: BrainBackend, context: SessionContext
) -> list[FrameProcessor]:
    """The turn's one assessment (similar-case evidence folded in), the brain, the model's second
    opinion on red flags (when a model is configured), and the safety layer."""
    processors: list[FrameProcessor] = [
        CaseEvidenceProcessor(),  # before the brain: it and the escalation read the same assessment
        BrainProcessor(
            backend,
            first_text_timeout_s=settings.llm.timeout_s,
            channel=context.channel,
            greeting=(
                resumed_greeting(context.resume.facts, settings.safety.emergency_number)
                if context.resume
                else None
            ),
        ),
    ]
    checker = create_red_flag_checker(settings)  # None for MODEL_BACKEND=mock
    if checker is not None:
        processors.append(SecondOpinionProcessor(checker))  # after the brain: nothing holds it up
    own_store = EscalationStore(settings.path(settings.escalations_dir))
    processors += safety_processors(
        session_id=context.session_id,
        store=None if context.escalations_queued else own_store,
        emergency_number=settings.safety.emergency_number,
        channel=context.channel,
        disclaimer_every_turns=settings.safety.disclaimer_every_turns,
        reassure_every_s=settings.clinician.reassure_every_s,
        repeat_emergency_after_s=settings.clinician.repeat_emergency_after_s,
        resumes_escalation=context.resume.escalation_id if context.resume else None,
    )
    return processors


def text_session(settings: Settings, backend: BrainBackend, context: SessionContext) -> list[FrameProcessor]:
    """From finished patient turns to the agent's guarded words: triage, retrieval, brain, safety.

    A spoken session is this chain between its ears and its voice; the evaluation runs it alone.
    Any of its processors failing escalates the session (``pipeline/fail_safe.py``).
    """
    return guard(_text_chain(settings, backend, context))


def _text_chain(settings: Settings, backend: BrainBackend, context: SessionContext) -> list[FrameProcessor]:
    processors: list[FrameProcessor] = [make_triage(settings, context.resume)]
    if context.retriever is not None:
        from pipeline.retrieval import RetrievalProcessor

        processors.append(RetrievalProcessor(context.retriever, k=settings.vector_store_top_k))
    return [*processors, *thinking_processors(settings, backend, context)]


def agent_processors(
    settings: Settings, backend: BrainBackend, context: SessionContext
) -> list[FrameProcessor]:
    """Everything after speech has become text: the text session, then the voice (fail-safe)."""
    return guard([*_text_chain(settings, backend, context), make_tts(settings), ReplyGate()])


def shared_transcriber_for(settings: Settings) -> Transcriber:
    """The process's Whisper, with the consultation's vocabulary the settings give."""
    voice = settings.voice
    return shared_transcriber(
        whisper_dir(settings), voice.whisper_compute_type, voice.whisper_threads, voice.vocabulary
    )


def listening_processors(settings: Settings) -> list[FrameProcessor]:
    """Speech in, turns and transcriptions out: VAD and the incremental transcriber (Whisper, or
    Google's speech-to-text with the cloud voice)."""
    cloud = cloud_voice(settings)
    transcriber: SpeechToText = cloud.transcriber() if cloud else shared_transcriber_for(settings)
    stt = IncrementalWhisperSTT(
        transcriber,
        end_of_turn=SharedSmartTurn(),  # the process's Smart Turn model, this turn's audio its own
        turn_stop_s=settings.voice.turn_stop_s,
        complete_stop_s=settings.voice.complete_stop_s,
        vad_stop_s=VAD_STOP_S,
        preempt_lead_s=settings.voice.preempt_lead_s if settings.voice.preemptive_generation else None,
    )
    return [make_vad(), stt]


def patient_session(
    settings: Settings, backend: BrainBackend, context: SessionContext
) -> list[FrameProcessor]:
    """The full chain for our pipeline (without the transport): any of its processors failing,
    from the VAD to the voice, escalates the session (``pipeline/fail_safe.py``)."""
    camera: list[FrameProcessor] = [CameraSampler()] if context.channel == Channel.VIDEO else []
    thinking = _text_chain(settings, backend, context)
    return guard([*listening_processors(settings), *camera, *thinking, make_tts(settings), ReplyGate()])


def warm_up(settings: Settings) -> None:
    """Pay the first-use costs (Whisper allocations, the clinical NLP) before the first patient,
    and synthesise the safety lines the voice falls back on (``pipeline/safety_audio.py``)."""
    from agent.facts import extract_facts
    from agent.hearing import warm_up as hearing_warm_up

    if cloud_voice(settings) is None:  # the cloud voice has no Whisper (and fails here if misconfigured)
        shared_transcriber_for(settings).warm_up()
    triage = make_triage(settings)
    hearing_warm_up()
    triage.assess(extract_facts("I have had an itchy rash on my arm for two weeks, no fever."), "no fever")
    prepare_safety_audio(voice_model(settings), settings.safety.emergency_number)  # loads the voice
    silero_session(), smart_turn_session()  # the shared listening models, before the first patient
    freeze_startup_heap()  # last: what start-up loaded is never garbage


def make_worker(
    transport: BaseTransport,
    processors: list[FrameProcessor],
    observers: list[BaseObserver] | None = None,
    *,
    output_rate: int = 24000,
    idle_timeout_s: float | None = 300.0,
    activity_frames: tuple[type, ...] = (),
) -> PipelineWorker:
    """One session's worker; it ends after ``idle_timeout_s`` without activity.

    Activity is pipecat's (the agent speaking, the patient's speech and words) plus
    ``activity_frames``: frames a transport or a room queues to say someone else is talking
    (a clinician in the room), so a long clinician conversation is not cut as idle.
    """
    from pipecat.frames.frames import (
        BotSpeakingFrame,
        InterimTranscriptionFrame,
        TranscriptionFrame,
        UserSpeakingFrame,
        UserStartedSpeakingFrame,
    )

    speech = (BotSpeakingFrame, InterimTranscriptionFrame, TranscriptionFrame, UserSpeakingFrame)
    pipeline = Pipeline([transport.input(), *processors, transport.output()])
    return PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=INPUT_RATE, audio_out_sample_rate=output_rate),
        observers=observers or [],
        idle_timeout_secs=idle_timeout_s,
        idle_timeout_frames=(*speech, UserStartedSpeakingFrame, *activity_frames),
        enable_tracing=False,  # pipecat's service spans carry the words said: see pipeline/tracing.py
    )


async def run_worker(worker: PipelineWorker) -> None:
    """Run one session's worker until it ends (its own runner: sessions are independent)."""
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
