"""Where a session stands, kept outside the process, so a patient who reconnects resumes there.

A replica can die mid-conversation, or the patient's network can drop. The patient's page then
offers again (on any replica) naming its session, and the new session starts from the
``ResumePoint`` the old one left: the clinical facts so far (so the interview goes on from where
it was and asks nothing twice), how many turns there were, and the escalation the session raised,
if any (so a raised escalation is raised again on the same record, never lost and never
doubled).

Only what the triage needs is kept: the facts (findings, sites, duration, age, skin type, what was
tried), never the transcript or the images. ``ResumePointObserver`` watches a session's frames
and hands each new point to a sink (the product's shared store, ``web/session_registry.py``);
a sink that fails is logged by session-free words and the conversation goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from pipecat.observers.base_observer import BaseObserver, FramePushed

from agent.facts import ClinicalFacts
from agent.policy import Urgency
from pipeline.frames import ClinicalStateFrame, EscalationFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumePoint:
    """A session's clinical state after its latest finished turn."""

    session_id: str
    facts: ClinicalFacts
    turns: int = 0
    escalation_id: str | None = None  # the record the session raised (raised again on resume)
    escalation_level: Urgency | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "facts": self.facts.to_dict(),
            "turns": self.turns,
            "escalation_id": self.escalation_id,
            "escalation_level": self.escalation_level.value if self.escalation_level else None,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ResumePoint:
        """The point a document holds; raises ValueError for one that is not a resume point."""
        try:
            level = document.get("escalation_level")
            return cls(
                session_id=str(document["session_id"]),
                facts=ClinicalFacts.from_dict(document["facts"]),
                turns=int(document.get("turns", 0)),
                escalation_id=document.get("escalation_id") or None,
                escalation_level=Urgency(level) if level else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a resume point ({type(exc).__name__})") from None


ResumePointSink = Callable[[ResumePoint], Awaitable[None]]


class ResumePointObserver(BaseObserver):
    """Hands the session's ``ResumePoint`` to ``sink`` after each finished turn and escalation.

    Saves are ordered (one at a time, the latest point wins) and never hold the pipeline up: the
    observer returns at once, and a point superseded while a save is on its way is skipped.
    """

    def __init__(self, sink: ResumePointSink, start: ResumePoint) -> None:
        super().__init__()
        self._sink = sink
        self._point = start
        self._pending: ResumePoint | None = None
        self._saving: asyncio.Task[None] | None = None
        self._seen: set[int] = set()  # frame ids: an observer sees a frame at every hop

    @property
    def point(self) -> ResumePoint:
        return self._point

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if isinstance(frame, ClinicalStateFrame) and frame.final and not frame.revised:
            if not self._first_time(frame.id):
                return
            self._point = replace(self._point, facts=frame.facts.copy(), turns=self._point.turns + 1)
        elif isinstance(frame, EscalationFrame):
            if not self._first_time(frame.id):
                return
            record = frame.record
            self._point = replace(self._point, escalation_id=record.id, escalation_level=record.level)
        else:
            return
        self._pending = self._point
        if self._saving is None or self._saving.done():
            self._saving = asyncio.ensure_future(self._save_pending())

    def _first_time(self, frame_id: int) -> bool:
        if frame_id in self._seen:
            return False
        self._seen.add(frame_id)
        if len(self._seen) > 256:  # a long session: only recent frames can come round again
            self._seen = set(sorted(self._seen)[-128:])
        return True

    async def _save_pending(self) -> None:
        while self._pending is not None:
            point, self._pending = self._pending, None
            try:
                await self._sink(point)
            except Exception as exc:  # noqa: BLE001 - resuming is a convenience; the session goes on
                log.warning("resume point not saved (%s): a reconnect would start afresh", type(exc).__name__)

    async def flush(self) -> None:
        """Wait for the latest point to be saved (a session's clean-up)."""
        if self._saving is not None:
            await asyncio.shield(self._saving)
