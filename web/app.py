"""The Starlette app: the patient page, WebRTC signalling, the clinician console, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent import pii
from agent.backends import create_backend
from agent.escalation import EscalationStore
from configs.settings import Settings
from media.host import SessionHost
from media.rooms import Rooms
from media.sip.server import SipServer
from pipeline.observers import EscalationObserver
from pipeline.session import warm_up
from rag.retrieval import Retriever
from web.audit import AuditLog
from web.auth import Auth
from web.clinician import clinician_routes
from web.queue import EscalationQueue
from web.webrtc_sessions import WebRTCSessions

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


def app_version() -> str:
    try:
        return version("patient-advocacy-agent")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def create_app(settings: Settings) -> Starlette:
    # Fail at start-up, not at the first patient, if the brain cannot be built.
    first_backend = create_backend(settings)
    auth = Auth(settings)
    audit = AuditLog.from_settings(settings)
    queue = EscalationQueue(EscalationStore(settings.path(settings.escalations_dir)))
    retriever = Retriever.from_settings(settings)
    rooms = Rooms()
    host = SessionHost(settings, retriever=retriever, rooms=rooms)
    host.add_observer_factory(lambda _live: EscalationObserver(queue.add))  # escalations reach the console
    sessions = WebRTCSessions(host)
    phone = SipServer(settings, host) if settings.sip.enabled else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        pii.warm_up()
        await asyncio.to_thread(retriever.warm)
        # A model backend pays its first-call costs (loading, compiling) before the first patient.
        backend_warm_up = getattr(first_backend, "warm_up", None)
        if backend_warm_up is not None:
            await asyncio.to_thread(backend_warm_up)
        warm_up(settings)  # after the other loads, before any call: it freezes them (pipeline/heap.py)
        if phone is not None:
            await phone.start()
            log.info("phone bridge on %s:%d", settings.sip.host, phone.port)
        log.info("server ready: env=%s backend=%s", settings.app_env, settings.model_backend)
        yield
        if phone is not None:
            await phone.stop()
        await sessions.close()
        await queue.close()

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def offer(request: Request) -> Response:
        try:
            body = await request.json()
            sdp, sdp_type = body["sdp"], body["type"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "expected JSON with 'sdp' and 'type'"}, status_code=400)
        answer = await sessions.answer(sdp, sdp_type, body.get("pc_id"))
        # The patient's key to their own room (its status, the clinician button), and no other.
        return JSONResponse({**answer, "room_token": auth.issue_patient_token(answer["session_id"])})

    async def health(_request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "env": settings.app_env,
                "version": app_version(),
                "backend": settings.model_backend,
                "active_sessions": len(host),
                "retrieval": retriever.status(),
                "phone": {"active_calls": phone.active_calls, "port": phone.port} if phone else "disabled",
            }
        )

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/offer", offer, methods=["POST"]),
            Route("/health", health),
            Route("/metrics", metrics),
            *clinician_routes(settings, auth, queue, audit, rooms),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )
