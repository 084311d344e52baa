"""The second-opinion processor: the model's red-flag check on every finished patient turn.

It sits between the brain and the escalation processor. Every frame passes on at once; a final
``TranscriptionFrame`` also starts a check (``agent.second_opinion``) as a background task with
the last few utterances as context, so the voice loop never waits for it. A red-flag opinion
becomes a ``SecondOpinionFrame``, which the escalation processor turns into an escalation exactly
as it does a rule's; a failed check is logged (without patient text) and counted, and the rules
alone decide that turn. While the session is escalated no checks run (the escalation processor
would ignore them); they resume when a clinician hands the patient back.

Why between the brain and the escalation processor, not before the brain: the brain processes a
turn's frames one at a time while it streams a reply, so a frame queued behind it would wait
seconds to reach the escalation processor. Here nothing holds it up; it is uninterruptible, so a
barge-in cannot drop it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from pipecat.frames.frames import CancelFrame, DataFrame, EndFrame, Frame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from prometheus_client import Counter

from agent.backends.base import Utterance
from agent.pii import redact
from agent.policy import Assessment, Urgency
from agent.second_opinion import MAX_HISTORY, RedFlagChecker, SecondOpinion, assessment_from
from pipeline.frames import AgentUtteranceFrame, EscalationFrame, EscalationResolvedFrame

log = logging.getLogger(__name__)
REASON_MARK = "\n\n[reason]\n"

SECOND_OPINION_FAILURES = Counter(
    "second_opinion_failures_total",
    "Second-opinion red-flag checks that could not be made (timeout, error, unparseable answer).",
)


@dataclass
class SecondOpinionFrame(DataFrame):
    """The model found a red flag in the patient's turn: the escalation processor escalates.

    ``reason`` is the model's short reason, redacted (it reaches the clinician's queue and the
    escalation record). Uninterruptible: a barge-in must not drop an escalation on its way.
    """

    level: Urgency = Urgency.URGENT
    reason: str = ""
    interruptible: bool = field(default=False, init=False)

    def assessment(self, escalate_from: Urgency = Urgency.URGENT) -> Assessment:
        """The escalation to raise, with the model's reason as its one reason."""
        return assessment_from(self.level, self.reason, escalate_from)


def redact_reason(reason: str, said: list[str]) -> str:
    """The model's reason without personal data. The redactor finds names by how people introduce
    themselves ("my name is ..."), never in "John says ...", so the reason is redacted together
    with the patient's words: a name introduced there is taken out of the reason too."""
    redacted = redact("\n".join(said) + REASON_MARK + reason)
    return redacted.rsplit(REASON_MARK, 1)[1] if REASON_MARK in redacted else redact(reason)


class SecondOpinionProcessor(FrameProcessor):
    def __init__(self, checker: RedFlagChecker, *, history: int = MAX_HISTORY) -> None:
        super().__init__()
        self._checker = checker
        self._history: deque[Utterance] = deque(maxlen=history)
        self._checks: set[asyncio.Task] = set()
        self._escalated = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, EndFrame | CancelFrame):
            await self._cancel_checks()  # before passing it on: nothing may follow the end
        await self.push_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame) and frame.finalized and frame.text.strip():
            history = list(self._history)
            self._history.append(Utterance("patient", frame.text))
            if not self._escalated:
                task = self.create_task(self._check(frame.text, history), "second-opinion")
                self._checks.add(task)
                task.add_done_callback(self._checks.discard)
        elif isinstance(frame, AgentUtteranceFrame) and direction == FrameDirection.UPSTREAM:
            self._history.append(Utterance("agent", frame.text))
        elif isinstance(frame, EscalationFrame) and direction == FrameDirection.UPSTREAM:
            self._escalated = True
        elif isinstance(frame, EscalationResolvedFrame):
            self._escalated = False

    async def cleanup(self) -> None:
        await self._cancel_checks()
        await super().cleanup()

    async def _check(self, patient_text: str, history: list[Utterance]) -> None:
        try:
            opinion = await self._checker.check(patient_text, history)
        except Exception as exc:  # noqa: BLE001 - checkers never raise; if one does, it is a failure
            opinion = SecondOpinion.failure(type(exc).__name__)
        if opinion.failed:
            SECOND_OPINION_FAILURES.inc()
            log.warning("second opinion (%s) could not be made: %s", self._checker.name, opinion.failed)
            return
        if not opinion.red_flag or self._escalated:
            return
        level = opinion.level or Urgency.URGENT
        log.warning("second opinion (%s): red flag, level=%s", self._checker.name, level.value)
        said = [u.text for u in history if u.role == "patient"] + [patient_text]
        reason = await asyncio.to_thread(redact_reason, opinion.reason, said) if opinion.reason else ""
        await self.push_frame(SecondOpinionFrame(level=level, reason=reason))

    async def _cancel_checks(self) -> None:
        for task in list(self._checks):
            await self.cancel_task(task)
        self._checks.clear()
