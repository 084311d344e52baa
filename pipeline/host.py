"""The session host: runs patient sessions on any transport, and knows which are live.

Browser sessions (``web/webrtc_sessions.py``) and phone calls (``media/sip``) both start a
session here, so that every session is assembled, observed and counted the same way. Extra
observers (the clinician queue's, for instance) are added per session by factories.
"""

from __future__ import annotations

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
from configs.logs import session_id_var
from configs.settings import Settings
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
    channel: str  # video | audio
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
    ) -> None:
        self.settings = settings
        self._make_backend = make_backend or (lambda: create_backend(settings))
        self._retriever = retriever
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
        channel: str = "video",
        session_id: str | None = None,
        output_rate: int = 24000,
        on_started: Callable[[LiveSession], None] | None = None,
    ) -> None:
        """Run one patient session on ``transport`` until it ends; never raises."""
        session_id = session_id or uuid.uuid4().hex[:12]
        session_id_var.set(session_id)
        context = SessionContext(session_id=session_id, channel=channel, retriever=self._retriever)
        worker = make_worker(
            transport,
            patient_session(self.settings, self._make_backend(), context),
            output_rate=output_rate,
        )
        live = LiveSession(session_id, transport_name, channel, worker)
        worker.add_observer(VoiceLatencyObserver())
        for factory in self._observer_factories:
            worker.add_observer(factory(live))
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
            log.info("session ended: %.0f s", time.monotonic() - live.started_at)
