"""The brain processor: greets, streams replies, and fails safe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pipecat.frames.frames import (
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.tests.utils import SleepFrame, run_test

from agent.backends.base import BrainBackend, BrainRequest
from agent.clarify import Ask, AskKind
from agent.facts import extract_facts
from agent.policy import assess
from pipeline.brain import BrainProcessor
from pipeline.frames import (
    BrainFailedFrame,
    ClinicalStateFrame,
    PreemptiveTurnFrame,
    PreemptiveTurnSettledFrame,
)
from tests.pipeline.safety_helpers import escalation_frame


class ScriptedBackend(BrainBackend):
    name = "scripted"

    def __init__(self, pieces: list[str], *, fail: bool = False, delay_s: float = 0.0) -> None:
        self.pieces, self.fail, self.delay_s = pieces, fail, delay_s
        self.requests: list[BrainRequest] = []

    def greeting(self) -> str:
        return "Hello, I am the intake assistant."

    async def reply(self, request: BrainRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("model crashed")
        for piece in self.pieces:
            yield piece


def patient(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="patient", timestamp="", finalized=True)


def texts(frames) -> list[str]:
    return [f.text for f in frames if isinstance(f, LLMTextFrame)]


async def test_greets_when_the_session_starts_and_streams_each_reply() -> None:
    backend = ScriptedBackend(["Where on your body ", "is it?"])
    down, _ = await run_test(BrainProcessor(backend), frames_to_send=[patient("I have a rash.")])
    assert texts(down) == ["Hello, I am the intake assistant.", "Where on your body ", "is it?"]
    assert sum(isinstance(f, LLMFullResponseStartFrame) for f in down) == 2
    assert sum(isinstance(f, LLMFullResponseEndFrame) for f in down) == 2
    assert backend.requests[0].patient_text == "I have a rash."


async def test_a_crashing_backend_becomes_a_failure_frame_not_silence() -> None:
    down, _ = await run_test(BrainProcessor(ScriptedBackend([], fail=True)), frames_to_send=[patient("hi")])
    failures = [f for f in down if isinstance(f, BrainFailedFrame)]
    assert len(failures) == 1 and "RuntimeError" in failures[0].reason


async def test_a_backend_that_hangs_times_out_into_a_failure() -> None:
    brain = BrainProcessor(ScriptedBackend(["late"], delay_s=5), first_text_timeout_s=0.2)
    down, _ = await run_test(brain, frames_to_send=[patient("hi"), SleepFrame(sleep=0.4)])
    assert [f.reason for f in down if isinstance(f, BrainFailedFrame)] == ["the brain timed out"]


class TricklingBackend(ScriptedBackend):
    """Answers a word at a time, each just within the per-piece wait: it would never time out."""

    async def reply(self, request: BrainRequest) -> AsyncIterator[str]:
        for _ in range(100):
            await asyncio.sleep(self.delay_s)
            yield "so "


async def test_a_backend_that_trickles_text_is_stopped_by_the_whole_reply_deadline() -> None:
    brain = BrainProcessor(TricklingBackend([], delay_s=0.15), first_text_timeout_s=0.2)
    down, _ = await run_test(brain, frames_to_send=[patient("hi"), SleepFrame(sleep=1.0)])
    assert [f.reason for f in down if isinstance(f, BrainFailedFrame)] == ["the brain timed out"]
    assert texts(down).count("so ") <= 4  # stopped at 3 x 0.2 s, not after 100 words


async def test_an_empty_reply_is_a_failure() -> None:
    down, _ = await run_test(BrainProcessor(ScriptedBackend(["", "  "])), frames_to_send=[patient("hi")])
    assert [f.reason for f in down if isinstance(f, BrainFailedFrame)] == ["the brain produced no reply"]


async def test_after_an_escalation_the_brain_gives_no_further_assessment() -> None:
    backend = ScriptedBackend(["It looks like eczema."])
    brain = BrainProcessor(backend)
    await run_test(
        brain,
        frames_to_send=[escalation_frame()],
        frames_to_send_direction=FrameDirection.UPSTREAM,
    )
    down, _ = await run_test(brain, frames_to_send=[patient("Is it serious?")], ignore_start=True)
    assert backend.requests == []
    assert "It looks like eczema." not in texts(down)


async def test_an_unsure_turn_gets_the_confirmation_instead_of_an_answer() -> None:
    backend = ScriptedBackend(["Where is it?"])
    ask = Ask(AskKind.CONFIRM, "Did you say something about a rash?")
    frames = [ClinicalStateFrame(final=True, text="I have a rash.", ask=ask), patient("I have a rash.")]
    down, _ = await run_test(BrainProcessor(backend), frames_to_send=frames)
    assert texts(down)[-1] == "Did you say something about a rash?"
    assert backend.requests == []  # the backend was not asked to answer a turn we may have misheard


async def test_speech_that_could_not_be_understood_is_asked_again() -> None:
    ask = Ask(AskKind.REPEAT, "I'm sorry, I didn't catch that. Could you say that again?")
    down, _ = await run_test(
        BrainProcessor(ScriptedBackend(["Where is it?"])),
        frames_to_send=[ClinicalStateFrame(final=True, text="", ask=ask), patient("It's on my arm.")],
    )
    assert texts(down)[-2:] == ["I'm sorry, I didn't catch that. Could you say that again?", "Where is it?"]


async def test_the_brain_answers_with_the_turns_own_assessment() -> None:
    backend = ScriptedBackend(["Where is it?"])
    facts = extract_facts("I have a small brown spot on my arm.")
    turn = ClinicalStateFrame(facts=facts, assessment=assess(facts), final=True, text="a spot")
    brain = BrainProcessor(backend)
    await run_test(brain, frames_to_send=[turn, patient("I have a small brown spot on my arm.")])
    assert backend.requests[0].assessment is turn.assessment is brain.assessment  # not one of its own


def draft(text: str, draft_id: int = 1) -> list:
    """Triage's provisional state of a draft turn, and the draft carrying it."""
    facts = extract_facts(text)
    provisional = ClinicalStateFrame(facts=facts, assessment=assess(facts), final=False, text=text)
    return [provisional, PreemptiveTurnFrame(text=text, draft_id=draft_id, state=provisional)]


async def test_a_kept_draft_is_answered_once_before_the_turn_ends() -> None:
    backend = ScriptedBackend(["Where on your body is it?"])
    turn = "I have a rash."
    down, _ = await run_test(
        BrainProcessor(backend),
        frames_to_send=[
            *draft(turn),
            SleepFrame(sleep=0.1),
            PreemptiveTurnSettledFrame(draft_id=1, kept=True),
            ClinicalStateFrame(facts=extract_facts(turn), final=True, text=turn),
            patient(turn),
        ],
    )
    assert [r.patient_text for r in backend.requests] == [turn]  # not answered again at the end
    assert texts(down).count("Where on your body is it?") == 1


async def test_a_dropped_draft_leaves_no_trace_and_the_whole_turn_is_answered() -> None:
    backend = ScriptedBackend(["Thank you."])
    whole = "It started on my back about three weeks ago."
    await run_test(
        BrainProcessor(backend),
        frames_to_send=[
            *draft("It started on my back"),
            SleepFrame(sleep=0.1),
            InterruptionFrame(),  # the patient went on
            PreemptiveTurnSettledFrame(draft_id=1, kept=False),
            patient(whole),
        ],
    )
    assert [r.patient_text for r in backend.requests] == ["It started on my back", whole]
    assert [u.text for u in backend.requests[1].history] == []  # the draft's words are not history


async def test_while_escalated_a_draft_is_not_answered_nor_passed_on_to_hold_the_voice() -> None:
    backend = ScriptedBackend(["Thank you."])
    down, _ = await run_test(BrainProcessor(backend), frames_to_send=draft("Is the clinician coming?"))
    assert any(isinstance(f, PreemptiveTurnFrame) for f in down)  # answered: passed on to the gate
    brain = BrainProcessor(backend)
    await run_test(
        brain, frames_to_send=[escalation_frame()], frames_to_send_direction=FrameDirection.UPSTREAM
    )
    down, _ = await run_test(brain, frames_to_send=draft("Is the clinician coming?"), ignore_start=True)
    assert not any(isinstance(f, PreemptiveTurnFrame) for f in down)  # the safety layer's lines play freely
    assert len(backend.requests) == 1
