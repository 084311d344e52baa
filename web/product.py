"""The composition root: the one place where the product is wired from the settings.

Every entry point gets the same product from ``build_product``: the server (``python -m web``),
the standalone phone bridge (``python -m web.phone``), the replay, the evaluation and the
benchmarks (``tools/``). So a phone call, a browser session, a replayed recording and an
evaluated conversation run the same processors with the same settings, the same retrieval,
rooms and clinician queue (``tests/web/test_product.py`` holds them to it).

What is built here is built once per process and shared by every session: the brain's first
backend (so that a brain that cannot be built fails at start-up, not at the first patient),
the case retriever, the escalation queue and its store, the rooms, the session host and, when
the settings enable it, the SIP bridge. Per-session state lives in the pipeline's processors.

The shared state (``web/shared``: Redis with ``REDIS_URL``, else this process's memory) is opened
by ``start``, being async: the escalation queue becomes this replica's view of the queue in it,
and the session registry (``web/session_registry.py``) keeps there which sessions this replica
holds and where each stands, for a patient who reconnects. A product that is never started (a
replay, the evaluation) keeps its queue to itself and its sessions unregistered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent import pii
from agent.backends import create_backend
from agent.backends.base import BrainBackend
from agent.escalation import EscalationStore
from configs.settings import Settings
from media.host import SessionHost
from media.rooms import Rooms
from media.sip.server import SipServer
from media.turn import ice_servers
from pipeline.session import warm_up
from pipeline.tracing import install_tracing
from rag.retrieval import Retriever
from web.queue import EscalationQueue
from web.session_registry import SharedSessionRegistry
from web.shared import SharedStore, open_store

log = logging.getLogger(__name__)


@dataclass
class Product:
    settings: Settings
    first_backend: BrainBackend
    retriever: Retriever
    queue: EscalationQueue
    rooms: Rooms
    host: SessionHost
    phone: SipServer | None
    registry: SharedSessionRegistry
    shared: SharedStore | None = None  # opened by ``start``

    async def warm_up(self) -> None:
        """Pay every first-use cost (models, indexes, compilation) before the first patient.

        The last step (``pipeline.session.warm_up``) also has Piper say the safety lines once and
        keeps their audio, for the voice to fall back on (``pipeline/safety_audio.py``).
        """
        pii.warm_up()
        await asyncio.to_thread(self.retriever.warm)
        backend_warm_up = getattr(self.first_backend, "warm_up", None)
        if backend_warm_up is not None:
            await asyncio.to_thread(backend_warm_up)
        warm_up(self.settings)  # after the other loads: it freezes them (pipeline/heap.py)

    async def start(self) -> None:
        """Open the shared state and share the queue through it (first: a wrong ``REDIS_URL`` fails
        at once, not after the warm-up), warm up, then open the phone line (when there is one)."""
        self.shared = await open_store(self.settings)
        try:
            await self.queue.share(self.shared)
            await self.registry.open(self.shared)  # which replica holds which session; resume points
        except BaseException:
            await self.shared.close()
            self.shared = None
            raise
        await self.warm_up()
        if self.phone is not None:
            await self.phone.start()
            log.info("phone bridge on %s:%d", self.settings.sip.host, self.phone.port)

    async def stop(self) -> None:
        if self.phone is not None:
            await self.phone.stop()
        await self.registry.close()
        await self.queue.close()
        if self.shared is not None:
            await self.shared.close()
            self.shared = None


def build_product(
    settings: Settings,
    *,
    make_backend: Callable[[], BrainBackend] | None = None,
    phone: bool | None = None,
) -> Product:
    """The product's object graph. ``phone`` overrides ``SIP__ENABLED`` (the bridge alone needs it)."""
    install_tracing(settings)  # once per process: the turn traces' exporter, when configured
    make_backend = make_backend or (lambda: create_backend(settings))
    first_backend = make_backend()
    retriever = Retriever.from_settings(settings)
    queue = EscalationQueue(EscalationStore(settings.path(settings.escalations_dir)))
    rooms = Rooms(lambda session_id: [s.for_server() for s in ice_servers(settings.turn, tag=session_id)])
    registry = SharedSessionRegistry(settings, queue)
    host = SessionHost(
        settings,
        make_backend=make_backend,
        retriever=retriever,
        rooms=rooms,
        escalation_sink=queue.add,  # escalations reach the console, and are stored there once
        registry=registry,  # sessions held here, and where each stands (a patient resumes anywhere)
    )
    with_phone = settings.sip.enabled if phone is None else phone
    return Product(
        settings=settings,
        first_backend=first_backend,
        retriever=retriever,
        queue=queue,
        rooms=rooms,
        host=host,
        phone=SipServer(settings, host) if with_phone else None,
        registry=registry,
    )
