"""A session that resumes one cut off goes on from where it stood: what the patient said is known,
an escalation is raised again on the same record, and each turn's resume point is kept."""

from __future__ import annotations

import pytest

from agent.backends.mock import InterviewBackend
from agent.escalation import EscalationRecord
from agent.facts import ClinicalFacts, Presence, extract_facts
from agent.policy import Urgency
from configs.settings import Settings
from pipeline.observers import EscalationObserver
from pipeline.resume import ResumePoint, ResumePointObserver
from pipeline.session import SessionContext, text_session
from pipeline.text_session import run_text_session


def test_a_resume_point_reads_back_what_it_wrote() -> None:
    facts = extract_facts("I have a new mole on my back for three weeks, it itches, no fever")
    point = ResumePoint("s1", facts, turns=3, escalation_id="e1", escalation_level=Urgency.URGENT)
    again = ResumePoint.from_document(point.to_document())
    assert again == point
    assert again.facts.present("new_mole") and again.facts.absent("fever")
    assert again.facts.duration_words == facts.duration_words


@pytest.mark.parametrize(
    "document",
    [{}, {"session_id": "s1"}, {"session_id": "s1", "facts": {"findings": {"not_a_finding": "present"}}}],
)
def test_a_document_that_is_not_a_resume_point_is_refused(document: dict) -> None:
    with pytest.raises(ValueError):
        ResumePoint.from_document(document)


async def test_a_resumed_session_knows_what_was_said_and_raises_the_same_escalation(
    settings: Settings,
) -> None:
    earlier = ClinicalFacts()
    earlier.record("pigmented_lesion", Presence.PRESENT)  # "a mole"
    point = ResumePoint("s1", earlier, turns=1, escalation_id="the-earlier-record")
    saved: list[ResumePoint] = []
    queued: list[EscalationRecord] = []

    async def save(p: ResumePoint) -> None:
        saved.append(p)

    async def queue(record: EscalationRecord) -> None:
        queued.append(record)

    processors = text_session(
        settings, InterviewBackend(settings), SessionContext("s1", resume=point, escalations_queued=True)
    )
    observer = ResumePointObserver(save, point)
    result = await run_text_session(
        processors, ["It has started bleeding."], observers=[observer, EscalationObserver(queue)]
    )
    await observer.flush()

    greeting = result.agent_turns[0].text
    assert "cut off" in greeting and "mole" in greeting.lower()  # told, and not asked again
    assert result.agent_turns[0].disclaimer  # a disclaimer in every session, a resumed one too
    # The mole from before the cut and the bleeding said now: urgent, on the record already queued.
    assert result.escalation is not None and result.escalation.level == Urgency.URGENT
    assert queued and {r.id for r in queued} == {"the-earlier-record"}
    last = saved[-1]
    assert last.facts.present("pigmented_lesion") and last.facts.present("bleeding")
    assert last.turns == 2 and last.escalation_id == "the-earlier-record"


async def test_a_sink_that_fails_does_not_stop_the_session(settings: Settings) -> None:
    async def broken(_point: ResumePoint) -> None:
        raise ConnectionError("the store went away")

    start = ResumePoint("s2", ClinicalFacts())
    observer = ResumePointObserver(broken, start)
    processors = text_session(settings, InterviewBackend(settings), SessionContext("s2"))
    result = await run_text_session(processors, ["I have an itchy rash on my arm."], observers=[observer])
    await observer.flush()
    assert len(result.agent_turns) == 2  # the greeting and the answer, with no store
    assert observer.point.facts.present("itching")
