"""The reply gate: a draft turn's voice is heard only once the turn has really ended."""

from __future__ import annotations

from pipecat.frames.frames import InterruptionFrame, TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame
from pipecat.tests.utils import SleepFrame, run_test

from pipeline.frames import PreemptiveTurnFrame, PreemptiveTurnSettledFrame
from pipeline.reply_gate import ReplyGate


def voice() -> list:
    audio = TTSAudioRawFrame(audio=bytes(960), sample_rate=24000, num_channels=1)
    return [TTSStartedFrame(), audio, TTSStoppedFrame()]


def order(frames) -> list[str]:
    kinds = (PreemptiveTurnSettledFrame, TTSStartedFrame, TTSAudioRawFrame, TTSStoppedFrame)
    return [type(f).__name__ for f in frames if isinstance(f, kinds)]


async def test_the_voice_of_a_draft_plays_only_once_the_turn_is_kept() -> None:
    down, _ = await run_test(
        ReplyGate(),
        frames_to_send=[
            PreemptiveTurnFrame(text="I have a rash.", draft_id=1),
            *voice(),
            SleepFrame(sleep=0.1),  # the patient's silence goes on: nothing may be heard yet
            PreemptiveTurnSettledFrame(draft_id=1, kept=True),
        ],
    )
    assert order(down) == [
        "PreemptiveTurnSettledFrame",
        "TTSStartedFrame",
        "TTSAudioRawFrame",
        "TTSStoppedFrame",
    ]


async def test_the_voice_of_a_draft_the_patient_talked_on_from_is_never_heard() -> None:
    down, _ = await run_test(
        ReplyGate(),
        frames_to_send=[
            PreemptiveTurnFrame(text="It is on my", draft_id=1),
            *voice(),
            SleepFrame(sleep=0.1),
            InterruptionFrame(),  # the patient went on
            PreemptiveTurnSettledFrame(draft_id=1, kept=False),
        ],
    )
    assert [f for f in down if isinstance(f, TTSAudioRawFrame)] == []


async def test_what_is_said_after_the_interruption_is_heard() -> None:
    # An escalation interrupts the draft's reply, then says its own line: that must play at once.
    down, _ = await run_test(
        ReplyGate(),
        frames_to_send=[
            PreemptiveTurnFrame(text="I can't breathe", draft_id=1),
            SleepFrame(sleep=0.05),
            InterruptionFrame(),
            SleepFrame(sleep=0.05),
            *voice(),
        ],
    )
    assert order(down) == ["TTSStartedFrame", "TTSAudioRawFrame", "TTSStoppedFrame"]


async def test_a_draft_kept_before_it_reached_the_gate_plays_as_it_comes() -> None:
    # The settlement is a system frame: it can overtake its draft on the way.
    down, _ = await run_test(
        ReplyGate(max_hold_s=30.0),
        frames_to_send=[
            PreemptiveTurnSettledFrame(draft_id=1, kept=True),
            SleepFrame(sleep=0.05),
            PreemptiveTurnFrame(text="I have a rash.", draft_id=1),
            *voice(),
        ],
    )
    assert order(down)[1:] == ["TTSStartedFrame", "TTSAudioRawFrame", "TTSStoppedFrame"]


async def test_a_draft_never_settled_is_released_rather_than_silencing_the_agent() -> None:
    down, _ = await run_test(
        ReplyGate(max_hold_s=0.2),
        frames_to_send=[
            PreemptiveTurnFrame(text="I have a rash.", draft_id=1),
            *voice(),
            SleepFrame(sleep=0.5),
        ],
    )
    assert order(down) == ["TTSStartedFrame", "TTSAudioRawFrame", "TTSStoppedFrame"]
