"""``MODEL_BACKEND=mock``: the deterministic intake interviewer (no model, the embedded default).

It is driven by the conversation state and the triage policy carried in each
``BrainRequest``: it acknowledges what it heard, asks the next question of the history that
is still open, and sums up with the policy's recommendation when the history is complete.
Same words for the same conversation, every time: replays and evaluations rely on that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from agent.backends.base import BrainBackend, BrainRequest
from agent.facts import ClinicalFacts
from agent.interview import GREETING, IMAGE_ADVICE, TOPICS, acknowledge, covered, summary_line
from configs.settings import Settings


class InterviewBackend(BrainBackend):
    name = "mock"

    def __init__(self, settings: Settings | None = None) -> None:
        self._asked: set[str] = set()
        self._previous = ClinicalFacts()
        self._summarised = False

    def greeting(self) -> str:
        return GREETING

    async def reply(self, request: BrainRequest) -> AsyncIterator[str]:
        for sentence in self._compose(request):
            yield sentence + " "

    def _compose(self, request: BrainRequest) -> list[str]:
        facts = request.facts if request.facts is not None else ClinicalFacts()
        sentences = [acknowledge(self._previous, facts)] if not self._summarised else []
        self._previous = facts.copy()
        pending = [
            topic
            for topic in TOPICS
            if topic.id not in self._asked and not covered(topic.id, facts, request.images, request.channel)
        ]
        if self._summarised:
            return ["Thank you, I've added that to my notes.", summary_line(facts, request.assessment)]
        if not pending:
            self._summarised = True
            return [s for s in (*sentences, summary_line(facts, request.assessment)) if s]
        topic = pending[0]
        self._asked.add(topic.id)
        question = topic.ask(request.channel)
        if topic.id == "look" and request.images and request.images[-1].quality in IMAGE_ADVICE:
            question = IMAGE_ADVICE[request.images[-1].quality]
        return [s for s in (*sentences, question) if s]
