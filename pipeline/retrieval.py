"""The retrieval processor: similar SCIN cases for each finished patient turn.

Every frame passes through. The processor keeps the latest camera still; on each final
``ClinicalStateFrame`` it forwards the frame, builds the query from the committed facts (canonical
finding labels, never the patient's words) and searches in a worker thread, off the frame path.
The result follows as a ``SimilarCasesFrame``; what the cases mean for the assessment is decided
after it, in one place (``pipeline/case_evidence.py``). A newer turn supersedes a search still running;
at the end of the session a search in flight is given a moment to finish. Errors and timeouts
are logged without patient text and produce no frame: the conversation goes on regardless.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pipecat.frames.frames import CancelFrame, EndFrame, Frame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.backends.base import RetrievedCase
from pipeline.frames import CameraStillFrame, ClinicalStateFrame, SimilarCasesFrame
from pipeline.metrics import RETRIEVALS_TOTAL
from rag.retrieval import CaseSearch, query_from_facts

log = logging.getLogger(__name__)


def matched_on(cases: list[RetrievedCase]) -> str:
    """The metric label: which indexes contributed ("image+text", "image", "text" or "none")."""
    kinds = {case.matched_on for case in cases}
    return "+".join(sorted(kinds)) if kinds else "none"


class RetrievalProcessor(FrameProcessor):
    def __init__(
        self, retriever: CaseSearch, *, k: int = 10, timeout_s: float = 5.0, end_wait_s: float = 2.0
    ) -> None:
        super().__init__()
        self._retriever = retriever
        self._k = k
        self._timeout_s = timeout_s
        self._end_wait_s = end_wait_s
        self._latest_jpeg: bytes | None = None
        self._task: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, CameraStillFrame) and frame.image is not None:
            self._latest_jpeg = frame.image.jpeg
        elif isinstance(frame, EndFrame):
            await self._finish_in_flight()
        elif isinstance(frame, CancelFrame):
            await self._cancel_in_flight()
        await self.push_frame(frame, direction)
        if (
            isinstance(frame, ClinicalStateFrame)
            and frame.final
            and not frame.revised  # the same turn again: its search is already made
            and direction == FrameDirection.DOWNSTREAM
        ):
            await self._start(query_from_facts(frame.facts))

    async def _start(self, query: str) -> None:
        image = self._latest_jpeg
        if not query and image is None:
            return  # nothing to search with yet
        await self._cancel_in_flight()  # a newer turn supersedes the search still running
        self._task = self.create_task(self._retrieve(query, image), "similar-cases")

    async def _retrieve(self, query: str, image: bytes | None) -> None:
        started = time.monotonic()
        try:
            cases = await asyncio.wait_for(
                asyncio.to_thread(self._retriever.search, query, image, self._k), timeout=self._timeout_s
            )
        except TimeoutError:
            log.warning("similar-case search timed out after %.1f s", self._timeout_s)
            return
        except Exception as exc:  # noqa: BLE001 - retrieval must never break the conversation
            log.warning("similar-case search failed (%s)", type(exc).__name__)
            return
        label = matched_on(cases)
        RETRIEVALS_TOTAL.labels(matched_on=label).inc()
        log.info("similar cases: %d (%s) in %.0f ms", len(cases), label, (time.monotonic() - started) * 1000)
        await self.push_frame(SimilarCasesFrame(cases=list(cases), query=query))

    async def _finish_in_flight(self) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self._end_wait_s)
        except TimeoutError:
            await self.cancel_task(task)

    async def _cancel_in_flight(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            await self.cancel_task(task)

    async def cleanup(self) -> None:
        await self._cancel_in_flight()
        await super().cleanup()
