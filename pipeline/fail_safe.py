"""The fail-safe: any processor error in a session ends in speech and an escalation, never silence.

How pipecat reports a processor's failure: an exception raised while a processor handles a frame
is caught by pipecat (``FrameProcessor.__process_frame``) and reported with ``push_error``, as is
an error a service reports itself (Piper's synthesis failing, an audio context that produced no
sound). Either way the processor's ``on_error`` event fires, in the failing processor, before an
``ErrorFrame`` goes upstream to the pipeline worker, which only logs it (``on_pipeline_error``;
the error is not fatal, and nothing else in the pipeline acts on it). An ``ErrorFrame`` travels
upstream, so it never reaches the escalation processor from a processor before it (the brain,
triage, the speech recognition).

So ``guard`` subscribes to ``on_error`` on every processor of the session as it is assembled
(``pipeline/session.py``: the spoken sessions and the evaluation's text sessions, every session
the product builds) and queues a ``ProcessorFailedFrame`` straight into the session's escalation
processor, which escalates as for a failed brain: ``FAILURE_PREFIX`` and the escalation message
are said, and the record goes to the clinician queue. Errors are counted
(``processor_errors_total``, by processor class) and logged by processor and exception type,
never with the error's text (it may quote the patient). A session escalates on at most
``MAX_ESCALATIONS`` of its errors, so a processor that fails on every frame (the escalation
processor itself, say) cannot loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pipecat.frames.frames import ErrorFrame
from pipecat.processors.frame_processor import FrameProcessor

from pipeline.escalation import EscalationProcessor
from pipeline.frames import ProcessorFailedFrame
from pipeline.metrics import PROCESSOR_ERRORS_TOTAL

log = logging.getLogger(__name__)
MAX_ESCALATIONS = 3


class FailSafe:
    """Turns the errors of one session's processors into escalations of that session."""

    def __init__(self, escalation: EscalationProcessor, *, max_escalations: int = MAX_ESCALATIONS) -> None:
        self._escalation = escalation
        self._left = max_escalations

    def watch(self, processors: Sequence[FrameProcessor]) -> None:
        for processor in processors:
            processor.add_event_handler("on_error", self._on_error)

    async def _on_error(self, processor: FrameProcessor, error: ErrorFrame) -> None:
        kind = type(processor).__name__
        PROCESSOR_ERRORS_TOTAL.labels(processor=kind).inc()
        cause = type(error.exception).__name__ if error.exception else "reported error"
        if self._left <= 0:
            log.error("processor error in %s (%s): escalated enough times already", kind, cause)
            return
        self._left -= 1
        log.error("processor error in %s (%s): escalating", kind, cause)
        await self._escalation.queue_frame(ProcessorFailedFrame(reason=f"{kind} failed ({cause})"))


def guard(processors: list[FrameProcessor]) -> list[FrameProcessor]:
    """The same processors, every error of each escalating the session (needs its escalation processor)."""
    escalation = next((p for p in processors if isinstance(p, EscalationProcessor)), None)
    if escalation is None:
        raise ValueError("a session without an escalation processor cannot fail safe")
    FailSafe(escalation).watch(processors)
    return processors
