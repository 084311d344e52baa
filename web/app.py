"""The Starlette app: the patient page, WebRTC signalling, the clinician console, health and metrics.

Every response carries the security headers (``web/security_headers.py``); every request body is
capped (``MAX_REQUEST_BYTES``) and nested no deeper than ``MAX_JSON_DEPTH``; Starlette's own
refusals (404, 405) are JSON like the rest. A new browser session is admitted only while a line
is free (``SESSIONS__MAX_CONCURRENT``) and the address has offers left this minute. ``/health``
is public and says only ``ok`` or ``degraded`` (a critical alert firing is one cause; which one is
for ``/health/details``, ``web/alerts``); ``/health/details`` and ``/metrics`` need ``Authorization: Bearer
<MONITORING_TOKEN>`` (open in development while no token is set). ``/api/ice-servers`` gives a
page the STUN/TURN servers (fresh TURN credentials) for its next peer connection, ``[]`` without
TURN (``media/turn.py``).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from agent.facts import ClinicalFacts
from configs.settings import Settings
from media.livekit_rooms import LiveKitRooms
from media.turn import ice_servers, page_ice_config
from pipeline.metrics import ESCALATION_STORE_FAILING
from pipeline.resume import ResumePoint
from web.admission import (
    AddressLimit,
    BodySizeLimit,
    JsonDepthLimit,
    address_key,
    client_address,
    lines_busy,
)
from web.alerts.local import LocalAlerts
from web.alerts.sources import fired_alerts
from web.audit import AuditLog
from web.auth import Auth
from web.capacity_agent import CapacityAgent, Lines
from web.clinician import clinician_routes
from web.livekit_routes import livekit_routes
from web.product import Product, build_product
from web.security_headers import SecurityHeaders
from web.webrtc_sessions import LinesBusy, NotYourConnection, UnreadableOffer, WebRTCSessions

STATIC = Path(__file__).parent / "static"
# On the answer to a new session's offer: a load balancer in front of replicas sticks the
# session's later requests to the replica that holds it (configs/haproxy/haproxy.cfg).
SESSION_ID_HEADER = "X-Session-Id"
log = logging.getLogger(__name__)


def app_version() -> str:
    try:
        return version("patient-advocacy-agent")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def monitoring_allowed(settings: Settings, request: Request) -> bool:
    """The bearer token of MONITORING_TOKEN, or development without a token set."""
    token = settings.monitoring_token.get_secret_value() if settings.monitoring_token else ""
    if not token:
        return settings.app_env == "development"
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _monitoring_refused() -> Response:
    return JSONResponse(
        {"error": "This endpoint needs the monitoring token."},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"},
    )


async def http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (404, 405...) in JSON, like every other refusal the pages read."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def escalations_not_taken_so_far() -> int:
    """Escalations whose record no clinician queue took (the fail-safe's count, pipeline/escalation.py)."""
    value = REGISTRY.get_sample_value("escalation_failures_total", {"stage": "handoff"})
    return int(value or 0)


def create_app(settings: Settings, product: Product | None = None) -> Starlette:
    product = product or build_product(settings)  # fails at start-up if the brain cannot be built
    auth = Auth(settings)
    audit = AuditLog.from_settings(settings)
    host, queue, retriever, phone = product.host, product.queue, product.retriever, product.phone
    sessions = WebRTCSessions(
        host,
        settings.sessions.max_concurrent,
        connect_deadline_s=settings.sessions.connect_deadline_s,
        ice_servers=lambda session_id: ice_servers(settings.turn, tag=session_id),
    )
    def address_limit(name: str, per_minute: int) -> AddressLimit:  # counted across replicas
        return AddressLimit(name, per_minute, shared=lambda: product.shared, key=address_key(settings))

    offers_limit = address_limit("offer", settings.sessions.offers_per_minute)
    # LIVEKIT__ENABLED: new sessions and clinicians' joins in LiveKit rooms (media/livekit_rooms.py).
    livekit = LiveKitRooms(host, settings) if settings.livekit.enabled else None
    # A page asks once before each offer (patient) or join (clinician): as often as offers are allowed.
    ice_limit = address_limit("ice-servers", settings.sessions.offers_per_minute)

    capacity_agent = (  # HAProxy's agent check: this replica's free lines (web/capacity_agent.py)
        CapacityAgent(
            settings.host,
            settings.sessions.agent_check_port,
            lambda: Lines(in_use=sessions.in_use(), limit=settings.sessions.max_concurrent),
        )
        if settings.sessions.agent_check_port
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await product.start()
        auth.share(product.shared)  # sign-outs hold on every replica
        if capacity_agent is not None:  # after the warm-up: free lines are offered once they answer
            await capacity_agent.start()
        log.info("server ready: env=%s backend=%s", settings.app_env, settings.model_backend)
        local_alerts.start()
        yield
        if capacity_agent is not None:
            await capacity_agent.stop()
        await sessions.close()
        if livekit is not None:
            await livekit.close()
        auth.share(None)
        await product.stop()
        await local_alerts.stop()

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def offer(request: Request) -> Response:
        wait = await offers_limit.hit(client_address(request))
        if wait:
            return AddressLimit.refusal(wait)
        try:
            body = await request.json()
            sdp, sdp_type, pc_id = body["sdp"], body["type"], body.get("pc_id")
            resume_id = body.get("resume")  # the session this page was in, when it reconnects
            if not (isinstance(sdp, str) and sdp_type in ("offer", "answer")):
                raise TypeError("sdp is text and type is offer or answer")
            if pc_id is not None and not isinstance(pc_id, str):
                raise TypeError("pc_id is text")
            if resume_id is not None and not isinstance(resume_id, str):
                raise TypeError("resume is a session id")
        except (ValueError, KeyError, TypeError, AttributeError):
            return JSONResponse({"error": "expected JSON with 'sdp' and 'type'"}, status_code=400)
        if livekit is not None:  # rooms are LiveKit's: no peer-to-peer session is started here
            return JSONResponse(
                {"error": "sessions start in LiveKit rooms here", "livekit": "/api/livekit/session"},
                status_code=409,
            )

        def holds_room_token(session_id: str) -> bool:  # a pc_id is bound to its session's token
            return auth.verify_patient_token(request.headers.get("x-room-token"), session_id)

        resume = None
        if resume_id is not None and not pc_id:
            if not holds_room_token(resume_id):  # only the patient's own page resumes a session
                log.warning("resume refused: the room token of that session was not shown")
                return JSONResponse({"error": "this session needs its room token"}, status_code=403)
            # Where it stood (any replica kept it); none kept: the same session, from the start.
            resume = await product.registry.resume_point(resume_id) or ResumePoint(resume_id, ClinicalFacts())
        try:
            answer = await sessions.answer(
                sdp, sdp_type, pc_id, may_renegotiate=holds_room_token, resume=resume
            )
        except NotYourConnection:
            log.warning("renegotiation refused: the room token of that connection was not shown")
            return JSONResponse({"error": "this connection needs its room token"}, status_code=403)
        except UnreadableOffer:
            # The traceback goes through the one redacting log set-up: aiortc quotes the bad line.
            log.warning("offer refused: its SDP could not be read", exc_info=True)
            return JSONResponse({"error": "the offer's SDP could not be read"}, status_code=400)
        except LinesBusy:
            log.warning("offer refused: every line is busy (%d)", settings.sessions.max_concurrent)
            return lines_busy(settings)
        # The patient's key to their own room (its status, the clinician button), and no other;
        # the emergency number, which the page shows if the connection drops (no server to ask then).
        # X-Session-Id: HAProxy learns which replica holds the session (configs/haproxy/haproxy.cfg).
        return JSONResponse(
            {
                **answer,
                "room_token": auth.issue_patient_token(answer["session_id"]),
                "emergency_number": settings.safety.emergency_number,
            },
            headers={SESSION_ID_HEADER: answer["session_id"]},
        )

    async def page_ice_servers(request: Request) -> Response:
        # Public like the page itself: whoever may offer may relay, for TURN__TTL_S at most.
        wait = await ice_limit.hit(client_address(request))
        if wait:
            return AddressLimit.refusal(wait)
        config = page_ice_config(settings.turn, ice_servers(settings.turn))
        return JSONResponse(config, headers={"Cache-Control": "no-store"})  # credentials: never cached

    not_taken_before = escalations_not_taken_so_far()

    def escalations_not_taken() -> int:  # since this app started
        return escalations_not_taken_so_far() - not_taken_before

    # Read at each scrape: the alert on records not written sees what /health sees.
    ESCALATION_STORE_FAILING.set_function(lambda: float(queue.storage_status()["storage"] == "failing"))

    # The rules of configs/prometheus evaluated over this process's metrics (web/alerts/local.py).
    local_alerts = LocalAlerts(settings)

    def overall() -> str:
        """``degraded`` while a clinician could miss something: escalation records or the audit log
        not written, or an escalation since start that no queue took (``docs/faults.md``); or while
        a critical alert of this replica's own evaluation fires."""
        failing = queue.storage_status()["storage"] == "failing" or audit.failing
        return "degraded" if failing or escalations_not_taken() or local_alerts.critical_firing() else "ok"

    async def health(_request: Request) -> Response:
        # Public (load balancers, the container's check): the status word, nothing that helps an
        # attacker: not even the names of the alerts firing (which defence is down), only that
        # one critical alert makes it "degraded". /health/details lists them (docs/runbook/README.md).
        return JSONResponse({"status": overall()}, headers={"Cache-Control": "no-store"})

    async def health_details(request: Request) -> Response:
        if not monitoring_allowed(settings, request):
            return _monitoring_refused()
        return JSONResponse(
            {
                "status": overall(),
                "env": settings.app_env,
                "version": app_version(),
                "backend": settings.model_backend,
                "active_sessions": len(host),
                "max_sessions": settings.sessions.max_concurrent,
                "retrieval": retriever.status(),
                "phone": {"active_calls": phone.active_calls, "port": phone.port} if phone else "disabled",
                **queue.storage_status(),
                "audit_log": "failing" if audit.failing else "ok",
                "escalations_not_taken": escalations_not_taken(),
                "model": product.first_backend.model_id(),  # what a rollback changed: LLM__MEDGEMMA_MODEL_ID
                # Firing now: Prometheus's or Alertmanager's when configured, else this replica's own.
                "alerts": (await fired_alerts(settings, local_alerts)).to_json(),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def metrics(request: Request) -> Response:
        if not monitoring_allowed(settings, request):
            return _monitoring_refused()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/offer", offer, methods=["POST"]),
            Route("/api/ice-servers", page_ice_servers),
            Route("/health", health),
            Route("/health/details", health_details),
            Route("/metrics", metrics),
            *clinician_routes(
                settings,
                auth,
                queue,
                audit,
                product.rooms if livekit is None else livekit,  # what the console's join and the rest act on
                address_limit,
                product.registry.is_live,
            ),
            *(
                livekit_routes(settings, auth, livekit, offers_limit, product.registry.resume_point)
                if livekit is not None
                else []
            ),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[
            # The patient's address behind a trusted proxy (what the per-address limits count).
            Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips),
            Middleware(
                SecurityHeaders,
                app_env=settings.app_env,
                livekit_url=settings.livekit.url if livekit is not None else None,  # the pages connect there
            ),
            Middleware(BodySizeLimit, max_bytes=settings.max_request_bytes),
            Middleware(JsonDepthLimit),  # inside the size limit: what it reads whole is capped
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.webrtc_sessions = sessions  # what tests and operators check is left open (nothing, idle)
    app.state.livekit_rooms = livekit  # LIVEKIT__ENABLED: this replica's LiveKit sessions
    return app
