"""The session host: runs patient sessions on any transport, and knows which are live.

Browser sessions (``web/webrtc_sessions.py``) and phone calls (``media/sip``) both start a
session here, so that every session is assembled, observed and counted the same way, and gets
a room a clinician can join (when the host has ``rooms``). Extra observers (the clinician
queue's, for instance) are added per session by factories.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.worker import PipelineWorker
from pipecat.transports.base_transport import BaseTransport

from agent.backends import create_backend
from agent.backends.base import BrainBackend
from agent.channel import Channel
from configs.logs import session_id_var
from configs.settings import Settings
from media.room import PatientSide
from media.room_observer import RoomObserver
from media.rooms import Rooms
from pipeline.heap import collect_ended_session
from pipeline.metrics import ACTIVE_SESSIONS, SESSIONS_TOTAL
from pipeline.observers import VoiceLatencyObserver
from pipeline.session import SessionContext, make_worker, patient_session, run_worker

if TYPE_CHECKING:
    from rag.retrieval import CaseSearch

log = logging.getLogger(__name__)


@dataclass
class LiveSession:
    session_id: str
    transport: str  # webrtc | sip | replay
    channel: Channel
    worker: PipelineWorker
    started_at: float = field(default_factory=time.monotonic)


ObserverFactory = Callable[[LiveSession], BaseObserver]


class SessionHost:
    def __init__(
        self,
        settings: Settings,
        *,
        make_backend: Callable[[], BrainBackend] | None = None,
        retriever: CaseSearch | None = None,
        observer_factories: list[ObserverFactory] | None = None,
        rooms: Rooms | None = None,
    ) -> None:
        self.settings = settings
        self._make_backend = make_backend or (lambda: create_backend(settings))
        self._retriever = retriever
        self.rooms = rooms
        self._observer_factories = list(observer_factories or [])
        self.live: dict[str, LiveSession] = {}

    def add_observer_factory(self, factory: ObserverFactory) -> None:
        self._observer_factories.append(factory)

    def __len__(self) -> int:
        return len(self.live)

    async def run(
        self,
        transport: BaseTransport,
        *,
        transport_name: str,
        channel: Channel = Channel.VIDEO,
        session_id: str | None = None,
        output_rate: int = 24000,
        on_started: Callable[[LiveSession], None] | None = None,
        patient: PatientSide | None = None,
        patient_rate: int = 24000,
    ) -> None:
        """Run one patient session on ``transport`` until it ends; never raises.

        ``patient`` is how the transport lets a clinician be heard (and seen) by the patient;
        with it, and rooms on the host, the session gets a room a clinician can join.
        """
        session_id = session_id or uuid.uuid4().hex
        session_id_var.set(session_id)
        context = SessionContext(session_id=session_id, channel=channel, retriever=self._retriever)
        # Loading the session's models takes a while: not on the event loop other calls run on.
        processors = await asyncio.to_thread(patient_session, self.settings, self._make_backend(), context)
        worker = make_worker(transport, processors, output_rate=output_rate)
        live = LiveSession(session_id, transport_name, channel, worker)
        worker.add_observer(VoiceLatencyObserver())
        for factory in self._observer_factories:
            worker.add_observer(factory(live))
        if self.rooms is not None and patient is not None:
            room = self.rooms.open(session_id, patient, patient_rate=patient_rate)
            room.attach_agent(worker)
            worker.add_observer(RoomObserver(room, transport.input()))
        self.live[session_id] = live
        ACTIVE_SESSIONS.inc()
        SESSIONS_TOTAL.labels(transport=transport_name).inc()
        log.info("session started: transport=%s channel=%s", transport_name, channel)
        try:
            if on_started is not None:
                on_started(live)
            await run_worker(worker)
        except Exception:  # noqa: BLE001 - one session failing must not take the server down
            log.exception("session failed")
        finally:
            ACTIVE_SESSIONS.dec()
            self.live.pop(session_id, None)
            if self.rooms is not None:
                await self.rooms.close(session_id)
            log.info("session ended: %.0f s", time.monotonic() - live.started_at)
            collect_ended_session()
