"""The second-opinion processor: checks each finished turn beside the voice loop, never in its way."""

from __future__ import annotations

import asyncio
import logging

from pipecat.frames.frames import Frame, TextFrame, TranscriptionFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test
from prometheus_client import REGISTRY

from agent.backends.base import Utterance
from agent.policy import Urgency
from agent.second_opinion import RedFlagChecker, SecondOpinion
from configs.settings import load_settings
from pipeline.frames import AgentUtteranceFrame, EscalationResolvedFrame
from pipeline.second_opinion import SecondOpinionFrame, SecondOpinionProcessor
from tests.agent.backends import conftest as backend_fixtures
from tests.pipeline.safety_helpers import escalation_frame

redaction_ready = backend_fixtures.redaction_ready

SAID = "My name is John Smith and my lips are swelling up."
RED = SecondOpinion(True, Urgency.EMERGENCY, "John Smith says his lips are swelling")


class FakeChecker(RedFlagChecker):
    """Answers every check with ``opinion`` after ``delay_s``; ``hang`` never answers."""

    name = "fake"

    def __init__(self, opinion: SecondOpinion, *, delay_s: float = 0.0, hang: bool = False) -> None:
        super().__init__(load_settings())
        self.opinion, self.delay_s, self.hang = opinion, delay_s, hang
        self.calls: list[tuple[str, list[Utterance]]] = []
        self.cancelled = False

    async def _ask(self, patient_text: str, history: list[Utterance]) -> str:
        raise AssertionError("check() is replaced")

    async def check(self, patient_text: str, history: list[Utterance]) -> SecondOpinion:
        self.calls.append((patient_text, history))
        try:
            await asyncio.sleep(3600 if self.hang else self.delay_s)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return self.opinion


class AgentSide(FrameProcessor):
    """Stands in for the safety layer: a TextFrame "agent: ..." comes back up as the agent's
    utterance, "escalate" / "resolve" as the escalation frames it sends up to the brain."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, TextFrame) and frame.text.startswith("agent: "):
            await self.push_frame(AgentUtteranceFrame(text=frame.text[7:]), FrameDirection.UPSTREAM)
        elif isinstance(frame, TextFrame) and frame.text == "escalate":
            await self.push_frame(escalation_frame(), FrameDirection.UPSTREAM)
        elif isinstance(frame, TextFrame) and frame.text == "resolve":
            await self.push_frame(EscalationResolvedFrame(), FrameDirection.UPSTREAM)


def patient(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="patient", timestamp="", finalized=True)


def failures() -> float:
    return REGISTRY.get_sample_value("second_opinion_failures_total") or 0.0


def opinions(frames) -> list[SecondOpinionFrame]:
    return [f for f in frames if isinstance(f, SecondOpinionFrame)]


async def test_a_red_flag_opinion_follows_the_turn_as_a_redacted_frame(redaction_ready) -> None:
    checker = FakeChecker(RED)
    down, _ = await run_test(
        SecondOpinionProcessor(checker), frames_to_send=[patient(SAID), SleepFrame(sleep=0.2)]
    )
    assert [type(f) for f in down] == [TranscriptionFrame, SecondOpinionFrame]
    [frame] = opinions(down)
    assert frame.level == Urgency.EMERGENCY and not frame.interruptible
    assert "lips are swelling" in frame.reason and "John Smith" not in frame.reason
    assert checker.calls == [(SAID, [])]
    assessment = frame.assessment()
    assert assessment.escalate and assessment.level == Urgency.EMERGENCY
    assert assessment.rule_ids == ["model_second_opinion"]


async def test_no_red_flag_no_frame() -> None:
    checker = FakeChecker(SecondOpinion(False, None, "an itchy rash"))
    down, _ = await run_test(
        SecondOpinionProcessor(checker),
        frames_to_send=[patient("I have an itchy rash."), SleepFrame(sleep=0.2)],
    )
    assert [type(f) for f in down] == [TranscriptionFrame]
    assert len(checker.calls) == 1


async def test_the_turn_passes_on_at_once_and_the_opinion_comes_when_it_is_ready(redaction_ready) -> None:
    down, _ = await run_test(
        SecondOpinionProcessor(FakeChecker(RED, delay_s=0.3)),
        frames_to_send=[patient(SAID), TextFrame("the agent keeps talking"), SleepFrame(sleep=0.6)],
    )
    assert [type(f) for f in down] == [TranscriptionFrame, TextFrame, SecondOpinionFrame]


async def test_a_check_that_hangs_holds_nothing_up_and_is_cancelled_at_the_end() -> None:
    checker = FakeChecker(RED, hang=True)
    down, _ = await asyncio.wait_for(
        run_test(
            SecondOpinionProcessor(checker),
            frames_to_send=[patient(SAID), TextFrame("next"), SleepFrame(sleep=0.1)],
        ),
        timeout=10,
    )
    assert [type(f) for f in down] == [TranscriptionFrame, TextFrame]
    assert checker.cancelled


async def test_a_failed_check_is_counted_and_logged_without_patient_text(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    before = failures()
    down, _ = await run_test(
        SecondOpinionProcessor(FakeChecker(SecondOpinion.failure("timeout"))),
        frames_to_send=[patient(SAID), SleepFrame(sleep=0.2)],
    )
    assert not opinions(down)
    assert failures() == before + 1
    assert "second opinion (fake) could not be made: timeout" in caplog.text
    assert "John" not in caplog.text and "swelling" not in caplog.text


async def test_interim_and_empty_transcriptions_are_not_checked() -> None:
    checker = FakeChecker(RED)
    interim = TranscriptionFrame(text=SAID, user_id="patient", timestamp="", finalized=False)
    await run_test(SecondOpinionProcessor(checker), frames_to_send=[interim, patient("  ")])
    assert checker.calls == []


async def test_history_carries_both_sides_and_no_checks_run_while_escalated() -> None:
    checker = FakeChecker(SecondOpinion(False, None, ""))
    await run_test(
        Pipeline([SecondOpinionProcessor(checker, history=3), AgentSide()]),
        frames_to_send=[
            patient("I have a rash."),
            TextFrame("agent: Where is it?"),
            SleepFrame(sleep=0.1),
            patient("On my back."),
            TextFrame("escalate"),
            SleepFrame(sleep=0.1),
            patient("Is it bad?"),  # escalated: safety answers; no check
            TextFrame("resolve"),
            SleepFrame(sleep=0.1),
            patient("It is itchy."),
            SleepFrame(sleep=0.1),
        ],
    )
    texts = [text for text, _ in checker.calls]
    assert texts == ["I have a rash.", "On my back.", "It is itchy."]
    assert checker.calls[1][1] == [Utterance("patient", "I have a rash."), Utterance("agent", "Where is it?")]
    assert [u.text for u in checker.calls[2][1]] == ["Where is it?", "On my back.", "Is it bad?"]  # last 3
