"""The spoken guard: guarded sentences, disclaimers, the safety layer's own lines as written."""

from __future__ import annotations

from pipecat.frames.frames import (
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.tests.utils import SleepFrame, run_test

from agent.disclaimer import FULL, SHORT
from agent.escalation import escalation_message
from agent.policy import Urgency
from pipeline.frames import (
    AgentLineFrame,
    AgentUtteranceFrame,
    PreemptiveTurnFrame,
    PreemptiveTurnSettledFrame,
)
from pipeline.spoken_guard import SpokenGuardProcessor
from tests.pipeline.safety_helpers import reply, spoken, utterances


async def test_unsafe_sentences_are_rewritten_before_they_are_spoken() -> None:
    down, _ = await run_test(
        SpokenGuardProcessor(),
        frames_to_send=[*reply("Hello."), *reply("You definitely have eczema. ", "Take 200 mg of it daily.")],
    )
    said = spoken(down)
    assert "definitely have eczema" not in said and "200 mg" not in said
    assert "might be eczema" in said and "pharmacist can advise" in said


async def test_the_first_turn_gets_the_disclaimer_and_utterances_are_reported() -> None:
    down, up = await run_test(SpokenGuardProcessor(), frames_to_send=reply("Hello, how can I help?"))
    assert "not a diagnosis" in spoken(down)
    reported = [f for f in down if isinstance(f, AgentUtteranceFrame)]
    assert len(reported) == 1 and reported[0].disclaimer
    assert any(isinstance(f, AgentUtteranceFrame) for f in up)  # the brain keeps its history


async def test_the_safety_layers_own_lines_are_said_as_written_without_a_disclaimer() -> None:
    message = escalation_message(Urgency.EMERGENCY, "911")  # it recommends care: a reply would get one
    down, up = await run_test(SpokenGuardProcessor(), frames_to_send=[AgentLineFrame(text=message)])
    assert spoken(down) == message and FULL not in spoken(down) and SHORT not in spoken(down)
    kinds = [type(f) for f in down if isinstance(f, LLMFullResponseStartFrame | LLMFullResponseEndFrame)]
    assert kinds == [LLMFullResponseStartFrame, LLMFullResponseEndFrame]  # one agent turn for the voice
    assert utterances(down) == [message] and utterances(up) == [message]


async def test_a_reply_cut_short_is_not_reported_as_said() -> None:
    line = "I'm connecting you with a clinician now."
    down, _ = await run_test(
        SpokenGuardProcessor(),
        frames_to_send=[
            LLMFullResponseStartFrame(),
            LLMTextFrame("It could be "),  # half a sentence of the brain's, then the interruption
            InterruptionFrame(),
            AgentLineFrame(text=line),
        ],
    )
    assert utterances(down) == [line]


async def test_a_draft_reply_is_reported_as_said_only_once_its_turn_is_kept() -> None:
    down, up = await run_test(
        SpokenGuardProcessor(),
        frames_to_send=[
            PreemptiveTurnFrame(text="I have a rash.", draft_id=1),
            *reply("Where on your body is it?"),
            SleepFrame(sleep=0.1),  # written and guarded, but the patient may still go on
            PreemptiveTurnSettledFrame(draft_id=1, kept=True),
        ],
    )
    kinds = [type(f) for f in down if isinstance(f, PreemptiveTurnSettledFrame | AgentUtteranceFrame)]
    assert kinds == [PreemptiveTurnSettledFrame, AgentUtteranceFrame]
    assert len(utterances(up)) == 1  # the brain's history gets it, once


async def test_a_dropped_draft_reply_is_not_reported_and_its_disclaimer_is_still_due() -> None:
    down, up = await run_test(
        SpokenGuardProcessor(),
        frames_to_send=[
            PreemptiveTurnFrame(text="It is on my", draft_id=1),
            *reply("Thank you."),  # the session's first words: they carry the disclaimer
            SleepFrame(sleep=0.1),
            InterruptionFrame(),  # the patient went on: none of it was heard
            PreemptiveTurnSettledFrame(draft_id=1, kept=False),
            *reply("Where on your body is it?"),
        ],
    )
    said = utterances(down)
    assert len(said) == 1 and said[0].startswith("Where on your body is it?") and FULL in said[0]
    assert utterances(up) == said
