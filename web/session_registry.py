"""Which replica holds which live session, and where each session stands, in the shared state.

The host (``media/host.py``) tells this registry when a session starts and ends here, and hands
it the session's resume point after every turn (``pipeline/resume.py``). In the shared store
(``web/shared``) that is:

- ``register_session`` / ``unregister_session`` and one heartbeat per replica (every third of
  ``SESSIONS__REGISTRY_TTL_S``): when a replica dies its heartbeat lapses, and every other
  replica sees its sessions have no live owner;
- a document ``resume:<session id>`` per session, kept ``SESSIONS__RESUME_TTL_S`` after its last
  turn whatever happened to the replica: a patient whose page reconnects (to any replica) resumes
  from it.

It also watches the sessions that have open escalations (every ``WATCH_EVERY_S``), so a console
on any replica shows whether the patient is still connected, and is told at once when a live
session is lost or comes back (``EscalationQueue.reshow``).

Every call is bounded in time and a failing store is logged, never raised into a session: a
conversation goes on without the registry, it only cannot be resumed elsewhere meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable
from typing import TypeVar

from configs.settings import Settings
from pipeline.resume import ResumePoint
from web.queue import ACTIVE, EscalationQueue
from web.shared import SharedStore, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")
RESUME_PREFIX = "resume:"
WATCH_EVERY_S = 2.0
CALL_TIMEOUT_S = 1.0


def default_replica_id() -> str:
    """This process, as the registry names it: its host name and process id (a restarted replica
    is a new one: the sessions of the old one were lost with it)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class SharedSessionRegistry:
    """The session registry and resume points of one replica, over the product's shared store."""

    def __init__(self, settings: Settings, queue: EscalationQueue, replica_id: str | None = None) -> None:
        self.replica_id = replica_id or settings.replica_id or default_replica_id()
        self._ttl_s = settings.sessions.registry_ttl_s
        self._resume_ttl_s = settings.sessions.resume_ttl_s
        self._queue = queue
        self._store: SharedStore | None = None
        self._held: set[str] = set()
        self._live_elsewhere: set[str] = set()  # open escalations' sessions a live replica holds
        self._tasks: list[asyncio.Task[None]] = []

    # --- the product's life --------------------------------------------------------------

    async def open(self, store: SharedStore) -> None:
        """Start using ``store``: the heartbeat, and the watch on the escalated sessions."""
        self._store = store
        await self._call(store.heartbeat(self.replica_id, self._ttl_s))
        self._tasks = [
            asyncio.create_task(self._beat(), name="registry-heartbeat"),
            asyncio.create_task(self._watch(), name="registry-watch"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._store = None

    # --- the host's calls (media.host.SessionRegistry) -------------------------------------

    async def hold(self, session_id: str) -> None:
        self._held.add(session_id)
        self._queue.reshow(session_id)  # back: the consoles stop saying the patient has gone
        if self._store is not None:
            await self._store.register_session(session_id, self.replica_id, self._ttl_s)

    async def release(self, session_id: str) -> None:
        self._held.discard(session_id)
        self._queue.reshow(session_id)
        if self._store is not None:
            await self._store.unregister_session(session_id)

    async def save(self, point: ResumePoint) -> None:
        if self._store is not None:
            await self._store.put(RESUME_PREFIX + point.session_id, point.to_document(), self._resume_ttl_s)

    # --- what the server asks --------------------------------------------------------------

    async def resume_point(self, session_id: str) -> ResumePoint | None:
        """Where ``session_id`` stood, or None (never seen, expired, unreadable, store failing)."""
        if self._store is None:
            return None
        try:
            document = await asyncio.wait_for(self._store.get(RESUME_PREFIX + session_id), CALL_TIMEOUT_S)
        except (StoreError, TimeoutError) as exc:
            log.warning("resume point not read (%s): the session starts afresh", type(exc).__name__)
            return None
        if document is None:
            return None
        try:
            return ResumePoint.from_document(document)
        except ValueError as exc:
            log.warning("resume point unreadable (%s): the session starts afresh", exc)
            return None

    def is_live(self, session_id: str) -> bool:
        """True while some replica holds the session (this one, or one that is alive)."""
        return session_id in self._held or session_id in self._live_elsewhere

    # --- internals -------------------------------------------------------------------------

    async def _beat(self) -> None:
        while self._store is not None:
            await asyncio.sleep(self._ttl_s / 3)
            if self._store is not None:
                await self._call(self._store.heartbeat(self.replica_id, self._ttl_s))

    async def _watch(self) -> None:
        while self._store is not None:
            store = self._store
            sessions = {r.session_id for r in self._queue.list() if r.status in ACTIVE} - self._held
            live: set[str] = set()
            for session_id in sessions:
                owner = await self._call(store.owner_of(session_id))
                if owner is not None:
                    live.add(session_id)
            changed, self._live_elsewhere = live ^ self._live_elsewhere, live
            for session_id in changed & sessions:
                self._queue.reshow(session_id)  # "patient not connected", or connected again
            await asyncio.sleep(WATCH_EVERY_S)

    async def _call(self, call: Awaitable[T]) -> T | None:
        try:
            return await asyncio.wait_for(call, CALL_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the registry catches up at the next beat
            log.warning("session registry: the shared store failed (%s)", type(exc).__name__)
            return None
