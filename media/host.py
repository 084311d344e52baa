"""The session host: starts patient sessions on any transport, and knows which are live.

Browser sessions (``web/webrtc_sessions.py``), phone calls (``media/sip``) and replays
(``tools/replay.py``) all start a session here, so that every session is assembled, observed and
counted the same way, and gets a room a clinician can join (when the host has ``rooms`` and the
transport can carry a clinician), and hands its escalations to the clinician queue (when the host
has an ``escalation_sink``). ``start`` returns a ``LiveSession`` handle: the transport
keeps it to wait for the session's end, to end it when the patient hangs up (``hang_up``: what
they already said is still heard and assessed) or to cancel it outright.

With a ``registry`` (``web/session_registry.py``: the shared store), the host says which sessions
this replica holds while they are live, and keeps each session's resume point there after every
turn, so a patient whose replica died or whose network dropped resumes on any replica
(``start(resume=...)``, ``pipeline/resume.py``). A registry that fails never stops a session.

The host also keeps the one count of lines (``SESSIONS__MAX_CONCURRENT``) every transport admits
against: live sessions plus the ones being set up (``reserve_line``), so a phone call and a
browser offer cannot both take the last line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from pipecat.frames.frames import EndFrame
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport

from agent.backends import create_backend
from agent.backends.base import BrainBackend
from agent.channel import Channel
from agent.escalation import EscalationRecord
from agent.facts import ClinicalFacts
from configs.logs import session_id_var
from configs.settings import Settings
from media.room import ClinicianSpeakingFrame, PatientSide, Room
from media.room_observer import RoomObserver
from media.rooms import Rooms
from pipeline.heap import collect_ended_session
from pipeline.metrics import ACTIVE_SESSIONS, SESSION_CAPACITY, SESSIONS_REFUSED_TOTAL, SESSIONS_TOTAL
from pipeline.observers import EscalationObserver, VoiceLatencyObserver
from pipeline.resume import ResumePoint, ResumePointObserver
from pipeline.session import SessionContext, make_worker, patient_session, run_worker, text_session
from pipeline.tracing import TurnSpanObserver
from pipeline.turn_observers import turn_observers

if TYPE_CHECKING:
    from rag.retrieval import CaseSearch

log = logging.getLogger(__name__)
EscalationSink = Callable[[EscalationRecord], Awaitable[None]]
# After a hang-up, how long the session may take to hear out and assess the patient's last words
# (a Whisper pass, the triage, the escalation handed to the queue) before it is cancelled.
HANG_UP_GRACE_S = 10.0
REGISTRY_TIMEOUT_S = 1.0  # a slow registry must not hold a session's start or its clean-up


class SessionRegistry(Protocol):
    """Which replica holds which live session, and where each session stands (shared by replicas)."""

    async def hold(self, session_id: str) -> None:
        """This replica holds ``session_id`` from now on (taking it from a replica that died)."""

    async def release(self, session_id: str) -> None:
        """``session_id`` has ended here (its resume point stays, for a patient who reconnects)."""

    async def save(self, point: ResumePoint) -> None:
        """Keep ``point``, the session's latest, for a resume."""


class LinesBusy(Exception):
    """Every line is taken (``SESSIONS__MAX_CONCURRENT``): no session may be set up now."""


class Line:
    """One admitted session's place under the cap, from admission until its session is live.

    The host counts it until ``release`` (idempotent); ``SessionHost.start`` releases it once the
    session is in ``live`` (or failed to start), so the count never dips in between.
    """

    def __init__(self, host: SessionHost) -> None:
        self._host: SessionHost | None = host

    def release(self) -> None:
        if self._host is not None:
            self._host._reserved -= 1
            self._host = None


class Transport(StrEnum):
    """How the patient's audio reaches the session (a metrics label and a log field)."""

    WEBRTC = "webrtc"
    SIP = "sip"
    REPLAY = "replay"
    LIVEKIT = "livekit"  # the agent in a LiveKit room (media/livekit_rooms.py)


@dataclass
class LiveSession:
    """A running session: what its transport holds on to."""

    session_id: str
    transport: Transport
    channel: Channel
    worker: PipelineWorker
    room: Room | None = None
    started_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task | None = field(default=None, repr=False)
    resume_points: ResumePointObserver | None = field(default=None, repr=False)  # with a registry

    async def wait(self) -> None:
        """Until the session has ended (it never raises: a failed session is logged and ended).

        Its models are freed on the loop's next turn, once the caller has let go of this handle.
        """
        if self.task is not None:
            await asyncio.shield(self.task)
        collect_ended_session()

    async def cancel(self) -> None:
        """End the session now, dropping whatever is in flight: its pipeline is cancelled cleanly."""
        await self.worker.cancel()

    async def hang_up(self, grace_s: float = HANG_UP_GRACE_S) -> None:
        """The patient left: what they already said is still transcribed and assessed, then the end.

        A patient who says "I can't breathe" as the line drops must still be escalated, so the
        session ends the graceful way (an ``EndFrame`` behind the audio already received: the
        speech-to-text finishes the turn it holds, the triage and the escalation see it) and is
        cancelled only if that takes longer than ``grace_s``.
        """
        if self.task is None or self.task.done():
            await self.cancel()
            return
        await self.worker.queue_frame(EndFrame())
        _done, pending = await asyncio.wait({self.task}, timeout=grace_s)
        if pending:
            log.warning("session did not end within %.0f s of the hang-up: cancelled", grace_s)
            await self.cancel()


class SessionHost:
    def __init__(
        self,
        settings: Settings,
        *,
        make_backend: Callable[[], BrainBackend] | None = None,
        retriever: CaseSearch | None = None,
        rooms: Rooms | None = None,
        escalation_sink: EscalationSink | None = None,
        registry: SessionRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._make_backend = make_backend or (lambda: create_backend(settings))
        self._retriever = retriever
        self.rooms = rooms
        self._escalation_sink = escalation_sink  # the clinician queue's: it stores the records
        self.live: dict[str, LiveSession] = {}
        self._reserved = 0  # admitted sessions not live yet (models loading, a call ringing)
        SESSION_CAPACITY.set(settings.sessions.max_concurrent)  # /metrics: active_sessions against it

    def __len__(self) -> int:
        return len(self.live)

    def in_use(self) -> int:
        """Lines taken: live sessions of every transport, and admitted ones being set up."""
        return len(self.live) + self._reserved

    def reserve_line(self, limit: int | None = None) -> Line:
        """Admit one more session, or raise ``LinesBusy`` (``limit``: ``SESSIONS__MAX_CONCURRENT``).

        Every transport admits here before it builds anything, so the cap holds for browser and
        phone sessions together. Pass the ``Line`` to ``start``, or ``release`` it if the session
        will not be started.
        """
        cap = self.settings.sessions.max_concurrent if limit is None else limit
        if self.in_use() >= cap:
            SESSIONS_REFUSED_TOTAL.inc()  # every transport is refused here: /api/offer and the phone
            raise LinesBusy
        self._reserved += 1
        return Line(self)

    def context(self, session_id: str, channel: Channel, resume: ResumePoint | None = None) -> SessionContext:
        return SessionContext(
            session_id=session_id,
            channel=channel,
            retriever=self._retriever,
            escalations_queued=self._escalation_sink is not None,
            resume=resume,
        )

    def observers(self) -> list[BaseObserver]:
        """What watches every session of this host: escalations to the clinician queue."""
        sink = self._escalation_sink
        return [EscalationObserver(sink)] if sink is not None else []

    def session_processors(self, context: SessionContext) -> list[FrameProcessor]:
        """The whole chain of a spoken session, speech in to speech out (without the transport)."""
        return patient_session(self.settings, self._make_backend(), context)

    def text_processors(self, context: SessionContext) -> list[FrameProcessor]:
        """The same session from finished turns to the agent's words (the evaluation's)."""
        return text_session(self.settings, self._make_backend(), context)

    async def start(
        self,
        transport: BaseTransport,
        *,
        kind: Transport,
        channel: Channel = Channel.VIDEO,
        session_id: str | None = None,
        output_rate: int = 24000,
        patient: PatientSide | None = None,
        patient_rate: int = 24000,
        observers: list[BaseObserver] | None = None,
        idle_timeout_s: float | None = 300.0,
        line: Line | None = None,
        resume: ResumePoint | None = None,
    ) -> LiveSession:
        """Assemble one patient session on ``transport`` and start it; returns its handle.

        ``resume``: where a session cut off stood; this one goes on from there under its id.

        ``patient`` is how the transport lets a clinician be heard (and seen) by the patient;
        with it, and rooms on the host, the session gets a room a clinician can join. ``line`` is
        the session's admission (``reserve_line``); it is released once the session is live or
        has failed to start.
        """
        try:
            return await self._start(
                transport, kind, channel, resume.session_id if resume else session_id, output_rate,
                patient, patient_rate, observers, idle_timeout_s, resume,
            )  # fmt: skip
        finally:
            if line is not None:
                line.release()  # the session is in ``live`` now, or never will be

    async def _start(
        self,
        transport: BaseTransport,
        kind: Transport,
        channel: Channel,
        session_id: str | None,
        output_rate: int,
        patient: PatientSide | None,
        patient_rate: int,
        observers: list[BaseObserver] | None,
        idle_timeout_s: float | None,
        resume: ResumePoint | None,
    ) -> LiveSession:
        session_id = session_id or uuid.uuid4().hex
        session_id_var.set(session_id)
        earlier = self.live.get(session_id)
        if earlier is not None:  # the same patient back on this replica: the old connection is gone
            await earlier.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(earlier.wait(), HANG_UP_GRACE_S)
        context = self.context(session_id, channel, resume)
        # Loading the session's models takes a while: not on the event loop other calls run on.
        processors = await asyncio.to_thread(self.session_processors, context)
        worker = make_worker(
            transport,
            processors,
            observers,
            output_rate=output_rate,
            idle_timeout_s=idle_timeout_s,
            activity_frames=(ClinicianSpeakingFrame,),  # a clinician talking is not an idle session
        )
        live = LiveSession(session_id, kind, channel, worker)
        spans = TurnSpanObserver(  # traces without personal data (pipeline/tracing.py)
            session_id,
            channel=channel,
            transport=kind,
            backend=self.settings.model_backend,
        )
        for observer in [VoiceLatencyObserver(), *turn_observers(), spans, *self.observers()]:
            worker.add_observer(observer)
        if self.registry is not None:
            start = resume or ResumePoint(session_id, ClinicalFacts())
            live.resume_points = ResumePointObserver(self.registry.save, start)
            worker.add_observer(live.resume_points)
            await self._tell_registry(self.registry.hold(session_id))
        if self.rooms is not None and patient is not None:
            live.room = self.rooms.open(session_id, patient, patient_rate=patient_rate)
            patient.connect_room(live.room)  # the clinician's voice reaches the patient from now on
            live.room.attach_agent(worker)
            worker.add_observer(RoomObserver(live.room, transport.input()))
        self.live[session_id] = live
        ACTIVE_SESSIONS.inc()
        SESSIONS_TOTAL.labels(transport=kind.value).inc()
        log.info("session started: transport=%s channel=%s", kind.value, channel.value)
        live.task = asyncio.create_task(self._run(live), name=f"session-{session_id[:8]}")
        return live

    async def _run(self, live: LiveSession) -> None:
        session_id_var.set(live.session_id)
        try:
            await run_worker(live.worker)
        except Exception:  # noqa: BLE001 - one session failing must not take the server down
            log.exception("session failed")
        finally:
            ACTIVE_SESSIONS.dec()
            if live.resume_points is not None:  # its last turn is kept before it is let go of
                await self._tell_registry(live.resume_points.flush())
            if self.live.get(live.session_id) is live:  # not when a resumed session took its place
                self.live.pop(live.session_id, None)
                if self.rooms is not None:
                    await self.rooms.close(live.session_id)
                if self.registry is not None:
                    await self._tell_registry(self.registry.release(live.session_id))
            log.info("session ended: %.0f s", time.monotonic() - live.started_at)
            collect_ended_session()

    @staticmethod
    async def _tell_registry(call: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(call, REGISTRY_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the session goes on; the registry catches up later
            log.warning("session registry not told (%s)", type(exc).__name__)
