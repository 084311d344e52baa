"""``MODEL_BACKEND=mock``: the deterministic intake interviewer (no model, the embedded default).

It is driven by the conversation state and the triage policy carried in each
``BrainRequest``: it acknowledges what it heard, asks the screening questions of any context the
facts show (``agent/screening.yaml``) and then the next question of the history that is still
open, and sums up with the policy's recommendation when the history is complete. A context that
appears after the summary still gets its screening questions.
Same words for the same conversation, every time: replays and evaluations rely on that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from agent.backends.base import BrainBackend, BrainRequest
from agent.facts import ClinicalFacts
from agent.interview import (
    GREETING,
    IMAGE_ADVICE,
    TOPICS,
    acknowledge,
    covered,
    screened_findings,
    screening_due,
    summary_line,
    topic_screened,
)
from configs.settings import Settings


class InterviewBackend(BrainBackend):
    name = "mock"

    def __init__(self, settings: Settings | None = None) -> None:
        self._asked: set[str] = set()  # topic ids
        self._screened: set[str] = set()  # screening question ids
        self._previous = ClinicalFacts()
        self._summarised = False

    def greeting(self) -> str:
        return GREETING

    async def reply(self, request: BrainRequest) -> AsyncIterator[str]:
        for sentence in self._compose(request):
            yield sentence + " "

    def _compose(self, request: BrainRequest) -> list[str]:
        facts = request.facts if request.facts is not None else ClinicalFacts()
        heard = acknowledge(self._previous, facts)
        self._previous = facts.copy()
        due = screening_due(facts, self._screened)
        if due:
            _, question = due[0]
            self._screened.add(question.id)
            return [s for s in (heard, question.ask(request.channel)) if s]
        if self._summarised:
            return ["Thank you, I've added that to my notes.", summary_line(facts, request.assessment)]
        screened = screened_findings(self._screened)
        pending = [
            topic
            for topic in TOPICS
            if topic.id not in self._asked
            and not topic_screened(topic.id, screened)
            and not covered(topic.id, facts, request.images, request.channel)
        ]
        if not pending:
            self._summarised = True
            return [s for s in (heard, summary_line(facts, request.assessment)) if s]
        topic = pending[0]
        self._asked.add(topic.id)
        question = topic.ask(request.channel)
        if topic.id == "look" and request.images and request.images[-1].quality in IMAGE_ADVICE:
            question = IMAGE_ADVICE[request.images[-1].quality]
        return [s for s in (heard, question) if s]
