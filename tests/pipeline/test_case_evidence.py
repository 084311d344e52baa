"""Similar-case evidence: malignant neighbours raise the turn's one assessment; benign ones never lower it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from pipecat.pipeline.pipeline import Pipeline
from pipecat.tests.utils import SleepFrame, run_test

from agent.backends.base import BrainBackend, BrainRequest, RetrievedCase
from agent.escalation import EscalationStore
from agent.policy import Urgency
from pipeline.brain import BrainProcessor
from pipeline.case_evidence import CaseEvidenceProcessor
from pipeline.escalation import EscalationProcessor
from pipeline.frames import ClinicalStateFrame, SimilarCasesFrame
from tests.pipeline.safety_helpers import escalations, patient, state

MALIGNANT = [
    RetrievedCase("1", {"Melanoma": 1.0}, 0.05, "image"),
    RetrievedCase("2", {"Basal Cell Carcinoma": 1.0}, 0.1, "image"),
]
BENIGN = [RetrievedCase("3", {"Eczema": 1.0}, 0.05, "image"), RetrievedCase("4", {"Acne": 1.0}, 0.1, "text")]
SPOT = "I have a small brown spot on my arm."


def states(frames) -> list[ClinicalStateFrame]:
    return [f for f in frames if isinstance(f, ClinicalStateFrame)]


async def test_cases_arriving_after_the_turn_revise_its_state_after_the_cases() -> None:
    down, _ = await run_test(
        CaseEvidenceProcessor(), frames_to_send=[state(SPOT), SimilarCasesFrame(cases=MALIGNANT)]
    )
    assert [type(f) for f in down] == [ClinicalStateFrame, SimilarCasesFrame, ClinicalStateFrame]
    turn, revised = states(down)
    assert turn.assessment.level == Urgency.ROUTINE and not turn.revised
    assert revised.revised and revised.final and revised.ask is None
    assert revised.assessment.level == Urgency.URGENT
    assert revised.assessment.rule_ids == ["similar_cases_malignant"]
    assert revised.facts is turn.facts


async def test_evidence_stays_and_raises_every_later_state_even_mid_phrase() -> None:
    down, _ = await run_test(
        CaseEvidenceProcessor(),
        frames_to_send=[
            state(SPOT),
            SimilarCasesFrame(cases=MALIGNANT),
            state("It itches a little", final=False),
            state("It itches a little."),
        ],
    )
    later = [s for s in states(down) if not s.revised][1:]
    assert [s.final for s in later] == [False, True]
    assert all(s.assessment.level == Urgency.URGENT for s in later)


async def test_benign_cases_never_lower_a_level_and_add_nothing() -> None:
    bleeding = state("My mole is bleeding.")
    said = bleeding.assessment
    down, _ = await run_test(
        CaseEvidenceProcessor(),
        frames_to_send=[bleeding, SimilarCasesFrame(cases=BENIGN), state(SPOT)],
    )
    first, later = states(down)  # no revision
    assert first.assessment is said and said.level == Urgency.URGENT  # the words alone decide
    assert later.assessment.level == Urgency.ROUTINE  # benign neighbours are no evidence


async def test_malignant_cases_after_a_red_flag_change_nothing() -> None:
    down, _ = await run_test(
        CaseEvidenceProcessor(),
        frames_to_send=[state("My lips are swelling up."), SimilarCasesFrame(cases=MALIGNANT)],
    )
    [turn] = states(down)  # an emergency is already more urgent: no revision
    assert turn.assessment.level == Urgency.EMERGENCY


class Recording(BrainBackend):
    """Answers every turn, and keeps what it was asked with."""

    name = "recording"

    def __init__(self) -> None:
        self.requests: list[BrainRequest] = []

    def greeting(self) -> str:
        return "Hello."

    async def reply(self, request: BrainRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        await asyncio.sleep(0)
        yield "Where on your arm is it?"


async def test_the_brain_and_the_escalation_act_on_the_same_assessment(tmp_path: Path) -> None:
    """Similar cases raise the turn's urgency: the brain words its replies with the very assessment
    the escalation processor escalates on, not one of its own."""
    backend = Recording()
    brain = BrainProcessor(backend)
    escalation = EscalationProcessor(session_id="s1", store=EscalationStore(tmp_path / "esc"))
    down, _ = await run_test(
        Pipeline([CaseEvidenceProcessor(), brain, escalation]),
        frames_to_send=[
            state(SPOT),
            patient(SPOT),
            SleepFrame(sleep=0.1),  # the brain answers the turn, then the search comes back
            SimilarCasesFrame(cases=MALIGNANT),
            SleepFrame(sleep=0.1),
        ],
    )
    [answered] = backend.requests
    assert answered.assessment.level == Urgency.ROUTINE  # what the turn said before its cases came
    raised = escalation.escalation
    assert raised is not None and raised.rule_ids == ["similar_cases_malignant"]
    assert brain.assessment is raised  # the one assessment, read by both
    [sent] = escalations(down)
    assert sent.level == Urgency.URGENT and [c["case_id"] for c in sent.record.similar_cases] == ["1", "2"]


async def test_with_evidence_known_a_later_turn_reaches_the_brain_already_raised(tmp_path: Path) -> None:
    brain = BrainProcessor(Recording())
    escalation = EscalationProcessor(session_id="s1", store=EscalationStore(tmp_path / "esc"))
    await run_test(
        Pipeline([CaseEvidenceProcessor(), brain, escalation]),
        frames_to_send=[
            SimilarCasesFrame(cases=MALIGNANT),  # a photo alone found them, before any words
            SleepFrame(sleep=0.1),
            state(SPOT),
            SleepFrame(sleep=0.1),
        ],
    )
    assert brain.assessment is not None and brain.assessment.rule_ids == ["similar_cases_malignant"]
    assert brain.assessment == escalation.escalation  # escalated on the photo; the turn says the same
