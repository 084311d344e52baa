"""The patient's way into a LiveKit room (``LIVEKIT__ENABLED``): ``POST /api/livekit/session``.

With LiveKit there is no SDP offer to answer: the page asks for a session, and this server picks
its id (the room's name), admits it under the line cap, starts the agent in that room
(``media/livekit_rooms.py``) and answers with what the page needs to join it: the LiveKit URL,
the patient's access token for that room only (short-lived: it only has to last until the page
connects), and this server's room token for the room endpoints (status, the clinician button),
as the WebRTC answer carries it. The same per-address limit as offers applies. A page that
reconnects sends ``{"resume": <session id>}`` with that session's room token, and the session goes
on from where it stood (``pipeline/resume.py``), as with an offer.

``GET /api/livekit`` tells the pages (``web/static/livekit.js``, ``clinician_livekit.js``) that
sessions here are LiveKit's: without the switch the route does not exist (404), and the pages
speak WebRTC to this server as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.facts import ClinicalFacts
from configs.settings import Settings
from media.host import LinesBusy
from media.livekit_rooms import LiveKitRooms
from pipeline.resume import ResumePoint
from web.admission import AddressLimit, client_address, lines_busy
from web.auth import Auth

SESSION_ID_HEADER = "X-Session-Id"  # as on the WebRTC answer: a load balancer sticks to the replica
log = logging.getLogger(__name__)


def livekit_routes(
    settings: Settings,
    auth: Auth,
    rooms: LiveKitRooms,
    limit: AddressLimit,
    resume_point: Callable[[str], Awaitable[ResumePoint | None]],
) -> list[Route]:
    """``limit``: the offers' per-address limit; ``resume_point``: the registry's stored points."""

    async def session(request: Request) -> Response:
        wait = await limit.hit(client_address(request))
        if wait:
            return AddressLimit.refusal(wait)
        try:
            body = await request.json() if await request.body() else {}
            resume_id = body.get("resume") if isinstance(body, dict) else None
            if resume_id is not None and not isinstance(resume_id, str):
                raise TypeError("resume is a session id")
        except (ValueError, TypeError):
            return JSONResponse({"error": "expected JSON, optionally with 'resume'"}, status_code=400)
        resume = None
        if resume_id is not None:
            if not auth.verify_patient_token(request.headers.get("x-room-token"), resume_id):
                log.warning("resume refused: the room token of that session was not shown")
                return JSONResponse({"error": "this session needs its room token"}, status_code=403)
            resume = await resume_point(resume_id) or ResumePoint(resume_id, ClinicalFacts())
        try:
            access = await rooms.open(resume)
        except LinesBusy:
            log.warning("LiveKit session refused: every line is busy (%d)", settings.sessions.max_concurrent)
            return lines_busy(settings)
        return JSONResponse(
            {
                "session_id": access.room,
                "url": access.url,
                "token": access.token,
                "expires_at": access.expires_at,
                "room_token": auth.issue_patient_token(access.room),
            },
            headers={SESSION_ID_HEADER: access.room, "Cache-Control": "no-store"},
        )

    async def mode(_request: Request) -> Response:
        return JSONResponse({"livekit": True, "session": "/api/livekit/session"})

    return [
        Route("/api/livekit", mode, methods=["GET"]),
        Route("/api/livekit/session", session, methods=["POST"]),
    ]
