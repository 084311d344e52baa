"""The triage processor: the state goes downstream before the words it came from."""

from __future__ import annotations

from pipecat.frames.frames import InterimTranscriptionFrame, TranscriptionFrame
from pipecat.tests.utils import run_test

from agent.policy import Urgency
from pipeline.frames import ClinicalStateFrame
from pipeline.triage import TriageProcessor


async def test_each_turn_is_committed_and_assessed_before_the_brain_sees_it() -> None:
    triage = TriageProcessor()
    down, _ = await run_test(
        triage,
        frames_to_send=[
            TranscriptionFrame(text="I have a mole on my back.", user_id="p", timestamp="", finalized=True),
            TranscriptionFrame(text="It has started bleeding.", user_id="p", timestamp="", finalized=True),
        ],
    )
    kinds = [type(f) for f in down]
    assert kinds == [ClinicalStateFrame, TranscriptionFrame, ClinicalStateFrame, TranscriptionFrame]
    first, second = down[0], down[2]
    assert first.final and not first.assessment.escalate
    assert second.assessment.level == Urgency.URGENT  # a mole from turn one, bleeding from turn two
    assert triage.facts.present("bleeding")


async def test_a_phrase_still_being_spoken_is_assessed_without_being_committed() -> None:
    triage = TriageProcessor()
    down, _ = await run_test(
        triage,
        frames_to_send=[InterimTranscriptionFrame(text="my throat is closing", user_id="p", timestamp="")],
    )
    assert down[0].assessment.level == Urgency.EMERGENCY and not down[0].final
    assert not triage.facts.present("breathing_difficulty")
