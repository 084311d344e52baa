"""The Starlette app: the patient page, WebRTC signalling, the clinician console, health and metrics."""

from __future__ import annotations

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

from configs.settings import Settings
from web.audit import AuditLog
from web.auth import Auth
from web.clinician import clinician_routes
from web.product import Product, build_product
from web.webrtc_sessions import WebRTCSessions

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


def app_version() -> str:
    try:
        return version("patient-advocacy-agent")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def create_app(settings: Settings, product: Product | None = None) -> Starlette:
    product = product or build_product(settings)  # fails at start-up if the brain cannot be built
    auth = Auth(settings)
    audit = AuditLog.from_settings(settings)
    host, queue, retriever, phone = product.host, product.queue, product.retriever, product.phone
    sessions = WebRTCSessions(host)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await product.start()
        log.info("server ready: env=%s backend=%s", settings.app_env, settings.model_backend)
        yield
        await sessions.close()
        await product.stop()

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
            *clinician_routes(settings, auth, queue, audit, product.rooms),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )
