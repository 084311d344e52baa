"""The turn-taking figures on /metrics: dropped replies, barge-in stop time, stage latency, capacity.

The observers are fed frames as pipecat hands them over (``FramePushed`` with the pipeline
clock's time of the push, broadcast frames as sibling pairs), and the Prometheus series are read
before and after.
"""

from __future__ import annotations

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseStartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from agent.escalation import EscalationRecord
from agent.policy import Urgency
from configs.settings import Settings
from pipeline.frames import (
    EscalationFrame,
    EscalationResolvedFrame,
    PreemptiveTurnFrame,
    PreemptiveTurnSettledFrame,
)
from pipeline.incremental_stt import IncrementalWhisperSTT
from pipeline.metrics import TurnStage
from pipeline.turn_observers import (
    BargeInObserver,
    DroppedReplyObserver,
    StageLatencyObserver,
)
from tests.pipeline.test_incremental_stt import FakeTranscriber, speech
from web.app import create_app

Timeline = list[tuple[float, Frame]]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def pair(frame_cls: type[Frame], **kwargs: object) -> list[Frame]:
    """A broadcast frame as pipecat pushes it: a downstream and an upstream copy, siblings."""
    down, up = frame_cls(**kwargs), frame_cls(**kwargs)
    down.broadcast_sibling_id, up.broadcast_sibling_id = up.id, down.id
    return [down, up]


def at(t: float, *frames: Frame | list[Frame]) -> Timeline:
    flat: list[Frame] = []
    for frame in frames:
        flat.extend(frame if isinstance(frame, list) else [frame])
    return [(t, frame) for frame in flat]


async def feed(observer: BaseObserver, timeline: Timeline) -> None:
    """Each frame as its first push between two processors, at its time on the pipeline clock."""
    source, destination = FrameProcessor(), FrameProcessor()
    seen: set[int] = set()
    for t, frame in timeline:
        sibling = getattr(frame, "broadcast_sibling_id", None)
        direction = FrameDirection.UPSTREAM if sibling in seen else FrameDirection.DOWNSTREAM
        seen.add(frame.id)
        await observer.on_push_frame(
            FramePushed(source, destination, frame, direction, timestamp=round(t * 1e9))
        )


def final(text: str = "It itches on my left forearm.") -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="patient", timestamp="", finalized=True)


def patient_turn(start: float, stop: float, closed: float) -> Timeline:
    """Speech from ``start`` to ``stop`` (the VAD's 0.2 s on both sides), the turn closed at ``closed``."""
    return [
        *at(start + 0.2, pair(VADUserStartedSpeakingFrame, start_secs=0.2), pair(UserStartedSpeakingFrame)),
        *at(stop + 0.2, pair(VADUserStoppedSpeakingFrame, stop_secs=0.2)),
        *at(closed, final(), pair(UserStoppedSpeakingFrame)),
    ]


def tts_audio() -> TTSAudioRawFrame:
    return TTSAudioRawFrame(audio=bytes(960), sample_rate=24000, num_channels=1)


def escalation() -> list[Frame]:
    record = EscalationRecord.create(
        session_id="s1", level=Urgency.URGENT, reasons=["bleeding"], rule_ids=[], summary="", transcript=[]
    )
    return pair(EscalationFrame, record=record)


# --- replies dropped because the patient went on ---------------------------------------------


async def test_a_reply_the_patient_talks_on_before_hearing_is_counted_dropped() -> None:
    # The patient paused mid-sentence, the turn ended, the brain began answering, and the
    # patient went on before a word of the answer was heard.
    before = value("replies_dropped_total")
    observer = DroppedReplyObserver()
    await feed(
        observer,
        [
            *patient_turn(0.0, 1.5, closed=2.0),
            *at(2.01, LLMFullResponseStartFrame()),
            *at(2.3, pair(VADUserStartedSpeakingFrame, start_secs=0.2)),
            *at(2.31, pair(InterruptionFrame), pair(UserStartedSpeakingFrame)),
        ],
    )
    assert value("replies_dropped_total") - before == 1


async def test_a_draft_reply_the_patient_talks_on_from_is_counted_dropped_and_a_kept_one_is_not() -> None:
    # Preemptive generation: the reply to the turn so far is made in the silence; the patient
    # going on drops it (settled, not kept), the silence ending the turn keeps it.
    before = value("replies_dropped_total")
    observer = DroppedReplyObserver()
    await feed(
        observer,
        [
            *at(1.6, PreemptiveTurnFrame(text="It is on my", draft_id=1), LLMFullResponseStartFrame()),
            *at(1.9, pair(InterruptionFrame), PreemptiveTurnSettledFrame(draft_id=1, kept=False)),
            *at(3.1, PreemptiveTurnFrame(text="It is on my arm.", draft_id=2), LLMFullResponseStartFrame()),
            *at(3.5, PreemptiveTurnSettledFrame(draft_id=2, kept=True)),
        ],
    )
    assert value("replies_dropped_total") - before == 1 and observer.dropped == 1


async def test_replies_heard_greetings_talked_over_and_escalation_lines_are_not_counted() -> None:
    before = value("replies_dropped_total")
    observer = DroppedReplyObserver()
    await feed(
        observer,
        [
            # The greeting is talked over before it is heard: no patient turn had ended.
            *at(0.0, LLMFullResponseStartFrame()),
            *patient_turn(0.1, 1.0, closed=1.5),
            # The reply is heard, then the patient speaks again (a barge-in, not a dropped reply).
            *at(1.51, LLMFullResponseStartFrame()),
            *at(2.2, pair(BotStartedSpeakingFrame)),
            *at(3.0, pair(BotStoppedSpeakingFrame)),
            *patient_turn(4.0, 5.0, closed=5.5),
            # Escalated: the brain is silent, the safety lines are never dropped.
            *at(5.6, escalation(), LLMFullResponseStartFrame()),
            *at(5.8, pair(UserStartedSpeakingFrame)),
        ],
    )
    assert value("replies_dropped_total") - before == 0
    # Handed back by the clinician: the interview resumes, and a dropped reply counts again.
    await feed(
        observer,
        [
            *at(9.0, pair(EscalationResolvedFrame)),
            *patient_turn(9.5, 10.5, closed=11.0),
            *at(11.01, LLMFullResponseStartFrame()),
            *at(11.2, pair(UserStartedSpeakingFrame)),
        ],
    )
    assert value("replies_dropped_total") - before == 1


async def test_the_incremental_transcriber_going_on_before_the_answer_is_heard_counts_one() -> None:
    # The frames of the transcriber itself: the turn ends at a comma, an answer begins, and the
    # patient goes on before any of it plays (test_incremental_stt's race), through pipecat.
    before = value("replies_dropped_total")
    fake = FakeTranscriber(["Sorry to interrupt,", "I have a rash on my arm."], delay_s=0.05)
    stt = IncrementalWhisperSTT(fake, turn_stop_s=0.4, vad_stop_s=0.2)
    observer, stages = DroppedReplyObserver(), StageLatencyObserver()
    await run_test(
        stt,
        frames_to_send=[
            VADUserStartedSpeakingFrame(start_secs=0.2),
            *speech(0.6),
            VADUserStoppedSpeakingFrame(stop_secs=0.2),
            SleepFrame(sleep=0.4),  # the turn ends; no BotStartedSpeakingFrame yet
            LLMFullResponseStartFrame(),  # the answer is on its way
            VADUserStartedSpeakingFrame(start_secs=0.2),
            *speech(0.6),
        ],
        observers=[observer, stages],
    )
    assert value("replies_dropped_total") - before == 1
    assert observer.dropped == 1
    # The first turn ended 0.4 s after the speech (turn_stop_s); the second, cut off mid-phrase
    # by the end of the session, had no end of turn to time.
    end_of_turn = [s for stage, s in stages.observed if stage == TurnStage.END_OF_TURN]
    assert len(end_of_turn) == 1 and 0.4 <= end_of_turn[0] < 1.5


# --- barge-in stop time ------------------------------------------------------------------------


async def test_barge_in_stop_time_runs_from_the_patients_onset_to_the_agents_voice_stopping() -> None:
    count = value("barge_in_stop_seconds_count")
    total = value("barge_in_stop_seconds_sum")
    under_250ms = value("barge_in_stop_seconds_bucket", le="0.25")
    observer = BargeInObserver()
    await feed(
        observer,
        [
            *at(1.0, pair(BotStartedSpeakingFrame)),
            # The patient starts at 3.0 s; the VAD is sure 0.2 s later; the voice stops at 3.35 s.
            *at(3.2, pair(VADUserStartedSpeakingFrame, start_secs=0.2)),
            *at(3.21, pair(InterruptionFrame), pair(UserStartedSpeakingFrame)),
            *at(3.35, pair(BotStoppedSpeakingFrame)),
            # Speech while the agent is silent is no barge-in.
            *at(5.0, pair(VADUserStartedSpeakingFrame, start_secs=0.2)),
            *at(6.0, pair(BotStartedSpeakingFrame)),
            *at(7.0, pair(BotStoppedSpeakingFrame)),
        ],
    )
    assert value("barge_in_stop_seconds_count") - count == 1
    assert abs(value("barge_in_stop_seconds_sum") - total - 0.35) < 1e-6
    assert value("barge_in_stop_seconds_bucket", le="0.25") - under_250ms == 0  # over the target
    assert [round(s, 3) for s in observer.stops_s] == [0.35]


# --- per-stage latency ---------------------------------------------------------------------------


async def test_stage_latency_splits_voice_to_voice_into_end_of_turn_transcription_and_first_audio() -> None:
    stages = ("end_of_turn", "final_transcription", "first_audio")
    counts = {s: value("stage_latency_seconds_count", stage=s) for s in stages}
    sums = {s: value("stage_latency_seconds_sum", stage=s) for s in stages}
    observer = StageLatencyObserver()
    await feed(
        observer,
        [
            # Speech ends at 2.0 s (the VAD says so at 2.2 s); the transcriber closes the turn at
            # 2.7 s (text first, then the turn's end, as it does); the first audio comes at 3.3 s.
            *patient_turn(0.0, 2.0, closed=2.7),
            *at(2.71, LLMFullResponseStartFrame()),
            *at(3.3, tts_audio()),
            *at(3.31, tts_audio(), pair(BotStartedSpeakingFrame)),
        ],
    )
    measured = {s: value("stage_latency_seconds_sum", stage=s) - sums[s] for s in stages}
    assert {s: value("stage_latency_seconds_count", stage=s) - counts[s] for s in stages} == dict.fromkeys(
        stages, 1
    )
    assert abs(measured["end_of_turn"] - 0.7) < 1e-6
    assert measured["final_transcription"] == 0.0  # the text was ready when the turn ended
    assert abs(measured["first_audio"] - 0.6) < 1e-6


async def test_a_pause_the_patient_talks_through_and_a_dropped_reply_are_not_timed_as_turns() -> None:
    counts = {s: value("stage_latency_seconds_count", stage=s) for s in ("end_of_turn", "first_audio")}
    observer = StageLatencyObserver()
    await feed(
        observer,
        [
            # A pause at 1.0 s the patient talks through: the speech end is the last one, 2.5 s.
            *at(0.2, pair(VADUserStartedSpeakingFrame, start_secs=0.2), pair(UserStartedSpeakingFrame)),
            *at(1.2, pair(VADUserStoppedSpeakingFrame, stop_secs=0.2)),
            *at(1.6, pair(VADUserStartedSpeakingFrame, start_secs=0.2)),
            *at(2.7, pair(VADUserStoppedSpeakingFrame, stop_secs=0.2)),
            *at(3.0, final(), pair(UserStoppedSpeakingFrame)),
            # The patient goes on before the reply is heard: its audio is not this turn's.
            *at(3.2, pair(VADUserStartedSpeakingFrame, start_secs=0.2), pair(UserStartedSpeakingFrame)),
            *at(3.5, tts_audio()),
        ],
    )
    assert value("stage_latency_seconds_count", stage="end_of_turn") - counts["end_of_turn"] == 1
    assert value("stage_latency_seconds_count", stage="first_audio") - counts["first_audio"] == 0
    assert [(stage.value, round(s, 3)) for stage, s in observer.observed] == [
        ("end_of_turn", 0.5),
        ("final_transcription", 0.0),
    ]


async def test_a_transcript_that_comes_after_the_turns_end_is_timed_as_final_transcription() -> None:
    # A transcriber that ends the turn first and transcribes after (not ours today): the wait
    # for the text is its own stage, and first audio counts from the text.
    observer = StageLatencyObserver()
    await feed(
        observer,
        [
            *at(0.2, pair(VADUserStartedSpeakingFrame, start_secs=0.2), pair(UserStartedSpeakingFrame)),
            *at(1.2, pair(VADUserStoppedSpeakingFrame, stop_secs=0.2)),
            *at(1.4, pair(UserStoppedSpeakingFrame)),
            *at(1.65, final()),
            *at(2.05, pair(BotStartedSpeakingFrame)),
        ],
    )
    assert [(stage.value, round(s, 3)) for stage, s in observer.observed] == [
        ("end_of_turn", 0.4),
        ("final_transcription", 0.25),
        ("first_audio", 0.4),
    ]


# --- /metrics ------------------------------------------------------------------------------------


def test_metrics_list_the_turn_taking_figures_and_the_session_cap(settings: Settings) -> None:
    seven_lines = settings.model_copy(
        update={"sessions": settings.sessions.model_copy(update={"max_concurrent": 7})}
    )
    with TestClient(create_app(seven_lines)) as client:
        text = client.get("/metrics").text
    for name in ("replies_dropped_total", "barge_in_stop_seconds_bucket", "session_capacity"):
        assert name in text
    for stage in ("end_of_turn", "final_transcription", "first_audio"):
        assert f'stage_latency_seconds_count{{stage="{stage}"}}' in text
    assert "session_capacity 7.0" in text.splitlines()
