"""The clinician console's routes, and the two a patient's page uses to ask for a clinician.

``clinician_routes(settings, auth, queue, audit, rooms)`` returns the routes; ``web/app.py``
mounts them. Everything under ``/clinician/api`` needs a signed-in clinician (401 otherwise);
a request that changes something also needs the session's CSRF token in ``X-CSRF-Token`` and,
when the browser sends one, an Origin of this host (403 otherwise). Every console request but
the event stream counts as activity and re-issues the session cookie (the idle timeout). The
live room is reached only through the ``Rooms`` protocol.

A patient's room endpoints take the room token in the ``X-Room-Token`` header only (one in the
query string ends up in access logs and is refused) and only while the room is live: the token
ends with the session. Refusals are audited, at most ``AUDIT_REFUSALS_PER_MINUTE`` per address.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agent.escalation import EscalationOutcome, EscalationRecord, EscalationStatus
from configs.settings import Settings
from web.admission import AddressLimit, client_address
from web.audit import AuditEvent, AuditLog
from web.auth import CSRF_HEADER, SESSION_COOKIE, Auth, Clinician, LoginRateLimited
from web.queue import (
    ACTIVE,
    CLAIMED,
    HANDED_BACK,
    JOINED,
    OUTCOMES,
    AlreadyClaimed,
    EscalationQueue,
    QueueError,
    UnknownEscalation,
    waiting_seconds,
)

STATIC = Path(__file__).parent / "static"
ROOM_TOKEN_HEADER = "x-room-token"
# Audit entries an address can cause by being refused (bad room tokens, sign-in over its limit):
# enough to see an attack, not enough to fill the disk with one.
AUDIT_REFUSALS_PER_MINUTE = 10
# A patient's request not yet in the queue (the agent raises it) is pending this long at most.
REQUEST_PENDING_S = 30.0
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
log = logging.getLogger(__name__)


class Rooms(Protocol):
    """The live room controller: how a clinician enters and leaves a patient's session."""

    async def join(self, session_id: str, clinician_display_name: str, sdp: str, sdp_type: str) -> dict: ...

    async def request_summary(self, session_id: str) -> None: ...

    async def hand_back(self, session_id: str) -> None: ...

    async def end(self, session_id: str) -> None: ...

    def is_live(self, session_id: str) -> bool: ...

    async def request_clinician(self, session_id: str) -> None: ...


Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        data, status_code=status_code, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def _error(status_code: int, message: str, **extra: Any) -> JSONResponse:
    return _json({"error": message, **extra}, status_code)


def _same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _credentials(request: Request) -> tuple[str, str]:
    raw = await request.body()
    if len(raw) > 4096:
        return "", ""
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(raw.decode(errors="replace"))
        data: Any = {key: values[0] for key, values in form.items()}
    else:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = {}
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("username") or ""), str(data.get("password") or "")


def clinician_routes(
    settings: Settings,
    auth: Auth,
    queue: EscalationQueue,
    audit: AuditLog,
    rooms: Rooms,
    address_limit: Callable[[str, int], AddressLimit] = AddressLimit,
    held_anywhere: Callable[[str], bool] | None = None,
    *,
    keepalive_s: float = 15.0,
) -> list[Route]:
    """The console page, its API, its event stream, and the patient's room endpoints.

    ``address_limit`` makes the per-address limits (``web/app.py``: counted across replicas).
    ``held_anywhere`` says whether a session is live on any replica (``web/session_registry.py``),
    for the console's "patient not connected"; the room endpoints act on this replica's rooms (a
    load balancer brings a session's requests to the replica that holds it).
    """
    sign_ins = address_limit("sign-in", settings.sessions.sign_ins_per_minute)
    refusal_audits = address_limit("refusal-audit", AUDIT_REFUSALS_PER_MINUTE)
    patient_requests = address_limit("clinician-request", settings.sessions.clinician_requests_per_minute)
    # session id -> (when the patient asked, the id of the session's escalation then): the request
    # is on its way to the agent until the queue holds a newer escalation for the session.
    requested: dict[str, tuple[float, str | None]] = {}

    def view(record: EscalationRecord) -> dict[str, Any]:
        data = record.to_dict()
        data["waiting_s"] = round(waiting_seconds(record), 1)
        data["clinician_name"] = auth.display_name(record.clinician)
        data["live"] = rooms.is_live(record.session_id) or bool(
            held_anywhere and held_anywhere(record.session_id)
        )
        return data

    async def guard(request: Request, *, changes: bool) -> Clinician | Response:
        clinician = await auth.signed_in(request.cookies.get(SESSION_COOKIE))
        if clinician is None:
            return _error(401, "Please sign in.", setup=auth.setup_message())
        if changes and not (
            _same_origin(request) and auth.check_csrf(clinician, request.headers.get(CSRF_HEADER))
        ):
            audit.record(AuditEvent.CSRF_REFUSED, clinician=clinician.username)
            return _error(403, "This request was refused: reload the console and try again.")
        return clinician

    async def audit_refusal(request: Request, event: AuditEvent, **fields: Any) -> None:
        """Audit a refused request unless its address has caused too many such entries this minute."""
        if not await refusal_audits.hit(client_address(request)):
            audit.record(event, **fields)

    def api(changes: bool, activity: bool = True) -> Callable[[Callable[..., Awaitable[Response]]], Handler]:
        def wrap(handler: Callable[..., Awaitable[Response]]) -> Handler:
            async def endpoint(request: Request) -> Response:
                clinician = await guard(request, changes=changes)
                if isinstance(clinician, Response):
                    return clinician
                try:
                    response = await handler(request, clinician)
                except UnknownEscalation:
                    response = _error(404, "No such escalation.")
                except QueueError as exc:  # the state moved on meanwhile (a claim lapsed, another tab)
                    response = _error(409, f"{str(exc).capitalize()}.")
                fresh = auth.refresh_session(request.cookies.get(SESSION_COOKIE)) if activity else None
                if fresh is not None:  # used now: the idle timeout starts again
                    response.set_cookie(SESSION_COOKIE, fresh, **auth.cookie_options())
                return response

            return endpoint

        return wrap

    def act(
        event: AuditEvent, clinician: Clinician, record: EscalationRecord, code: str | None = None
    ) -> None:
        audit.record(
            event,
            clinician=clinician.username,
            escalation_id=record.id,
            session_id=record.session_id,
            code=code,
        )

    def mine(
        record_id: str, clinician: Clinician, states: tuple[EscalationStatus, ...]
    ) -> EscalationRecord | Response:
        record = queue.get(record_id)
        if record is None:
            return _error(404, "No such escalation.")
        if record.clinician != clinician.username:
            return _error(403, "Only the clinician who claimed this escalation can do that.")
        if record.status not in states:
            return _error(409, f"This escalation is {record.status.replace('_', ' ')}.")
        return record

    # --- the page and signing in ----------------------------------------------------------

    async def page(_request: Request) -> Response:
        return FileResponse(STATIC / "clinician.html", headers=PAGE_HEADERS)

    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return _error(403, "This request was refused.")
        address = client_address(request)
        wait = await sign_ins.hit(address)
        if wait:
            await audit_refusal(request, AuditEvent.SIGN_IN_FAILED, code="rate_limited")
            return AddressLimit.refusal(wait)
        username, password = await _credentials(request)
        account = auth.accounts().get(username.strip().lower())
        staff = account.username if account else None  # never record what an unknown user typed
        if not auth.accounts():
            audit.record(AuditEvent.SIGN_IN_FAILED, code="no_accounts")
            return _error(401, "Wrong username or password.", setup=auth.setup_message())
        try:
            # argon2 takes tens of milliseconds of CPU: off the event loop that carries the voices.
            clinician = await asyncio.to_thread(auth.authenticate, username, password, address)
        except LoginRateLimited as exc:
            await audit_refusal(request, AuditEvent.SIGN_IN_FAILED, clinician=staff, code="rate_limited")
            wait = max(1, round(exc.retry_after_s))
            return _json(
                {"error": f"Too many attempts. Try again in {wait} seconds."}, 429, {"Retry-After": str(wait)}
            )
        if clinician is None:
            audit.record(AuditEvent.SIGN_IN_FAILED, clinician=staff, code="wrong_credentials")
            return _error(401, "Wrong username or password.")
        cookie = auth.issue_session(clinician)
        signed_in = auth.verify_session(cookie)
        assert signed_in is not None
        audit.record(AuditEvent.SIGN_IN, clinician=clinician.username)
        response = _json(_me(signed_in))
        response.set_cookie(SESSION_COOKIE, cookie, **auth.cookie_options())
        return response

    async def logout(request: Request) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        clinician = await auth.signed_in(cookie)
        if clinician is not None:
            refused = await guard(request, changes=True)
            if isinstance(refused, Response):
                return refused
            await auth.sign_out(cookie)
            audit.record(AuditEvent.SIGN_OUT, clinician=clinician.username)
        response = _json({"signed_in": False})
        options = auth.cookie_options()
        response.delete_cookie(
            SESSION_COOKIE, path=options["path"], secure=options["secure"], httponly=True, samesite="strict"
        )
        return response

    def _me(clinician: Clinician) -> dict[str, Any]:
        return {
            "username": clinician.username,
            "display_name": clinician.display_name,
            "csrf": clinician.csrf_token,
        }

    @api(changes=False)
    async def me(_request: Request, clinician: Clinician) -> Response:
        return _json(_me(clinician))

    # --- the queue ------------------------------------------------------------------------

    @api(changes=False)
    async def escalations(_request: Request, _clinician: Clinician) -> Response:
        return _json([view(r) for r in queue.list()])

    @api(changes=False, activity=False)  # an open console is not a clinician at the screen
    async def events(request: Request, _clinician: Clinician) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)

        async def stream() -> AsyncIterator[str]:
            subscription = queue.subscribe()  # before the snapshot: no change falls in between
            try:
                yield _sse("snapshot", {"escalations": [view(r) for r in queue.list()]}, retry_ms=3000)
                while True:
                    try:
                        change = await asyncio.wait_for(anext(subscription), keepalive_s)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        if await auth.signed_in(cookie) is None:
                            yield _sse("signed-out", {})
                            return
                        yield ": keep-alive\n\n"
                        continue
                    yield _sse("change", {"kind": change.kind, "escalation": view(change.record)})
            finally:
                subscription.close()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @api(changes=True)
    async def claim(request: Request, clinician: Clinician) -> Response:
        record_id = request.path_params["id"]
        try:
            record = await queue.claim(record_id, clinician.username)
        except AlreadyClaimed as exc:
            record = queue.get(record_id)
            audit.record(
                AuditEvent.CLAIM_CONFLICT,
                clinician=clinician.username,
                escalation_id=record_id,
                session_id=record.session_id if record else None,
            )
            name = auth.display_name(exc.claimed_by)
            return _error(409, f"Already claimed by {name}.", claimed_by=name)
        act(AuditEvent.CLAIM, clinician, record)
        return _json(view(record))

    @api(changes=True)
    async def release(request: Request, clinician: Clinician) -> Response:
        record = mine(request.path_params["id"], clinician, (CLAIMED,))
        if isinstance(record, Response):
            return record
        await queue.release(record.id, clinician.username)
        act(AuditEvent.RELEASE, clinician, record)
        return _json(view(record))

    @api(changes=True)
    async def join(request: Request, clinician: Clinician) -> Response:
        record = mine(request.path_params["id"], clinician, (CLAIMED, JOINED, HANDED_BACK))
        if isinstance(record, Response):
            return record
        try:  # LiveKit rooms (``takes_offer`` False) need no SDP: the answer is a LiveKit token
            body = await request.json() if getattr(rooms, "takes_offer", True) else {"sdp": "", "type": ""}
            sdp, sdp_type = str(body["sdp"]), str(body["type"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "Expected JSON with 'sdp' and 'type'.")
        if not rooms.is_live(record.session_id):
            return _error(409, "The patient has left: this session is no longer live.")
        try:
            answer = await rooms.join(record.session_id, clinician.display_name, sdp, sdp_type)
        except Exception:  # noqa: BLE001 - the clinician gets a clear answer, the log the cause
            log.exception("joining the room of escalation %s failed", record.id)
            return _error(502, "Could not connect to the patient's session. Try again.")
        try:
            await queue.mark_joined(record.id, clinician.username)
        except QueueError as exc:
            await rooms.hand_back(record.session_id)  # the claim lapsed while connecting
            return _error(409, f"{str(exc).capitalize()}.")
        act(AuditEvent.JOIN, clinician, record)
        return _json(answer)

    @api(changes=True)
    async def summary(request: Request, clinician: Clinician) -> Response:
        record = mine(request.path_params["id"], clinician, (JOINED,))
        if isinstance(record, Response):
            return record
        await rooms.request_summary(record.session_id)
        act(AuditEvent.SUMMARY_REQUESTED, clinician, record)
        return _json({"requested": True}, 202)

    @api(changes=True)
    async def hand_back(request: Request, clinician: Clinician) -> Response:
        record = mine(request.path_params["id"], clinician, (JOINED,))
        if isinstance(record, Response):
            return record
        if rooms.is_live(record.session_id):
            await rooms.hand_back(record.session_id)
        await queue.hand_back(record.id, clinician.username)
        act(AuditEvent.HAND_BACK, clinician, record)
        return _json(view(record))

    @api(changes=True)
    async def end(request: Request, clinician: Clinician) -> Response:
        record = mine(request.path_params["id"], clinician, (CLAIMED, JOINED, HANDED_BACK))
        if isinstance(record, Response):
            return record
        try:
            body = json.loads(await request.body() or b"{}")
            said = str(body.get("outcome") or EscalationOutcome.COMPLETED) if isinstance(body, dict) else ""
            outcome = EscalationOutcome(said)
        except ValueError:
            return _error(400, f"The outcome is one of: {', '.join(OUTCOMES)}.")
        if record.status in (CLAIMED, JOINED) and rooms.is_live(record.session_id):
            # The clinician is in the room, or ends it without joining (a referral, a call to the
            # emergency services): either way nobody is coming, so the session says goodbye and ends.
            await rooms.end(record.session_id)
        await queue.end(record.id, clinician.username, outcome)
        act(AuditEvent.END, clinician, record, outcome)
        return _json(view(record))

    # --- the patient's side ---------------------------------------------------------------

    def room_status(session_id: str) -> dict[str, Any]:
        record = queue.for_session(session_id)
        if record is None:
            return {"status": "none", "clinician": None}
        return {"status": record.status, "clinician": auth.display_name(record.clinician)}

    async def room_refusal(request: Request, session_id: str) -> Response | None:
        """None when the request carries this live room's token in its header, else the refusal."""
        if "token" in request.query_params:
            code, refusal = "token_in_query", _error(403, "Send the room token in the X-Room-Token header.")
        elif not auth.verify_patient_token(request.headers.get(ROOM_TOKEN_HEADER), session_id):
            code, refusal = "token_invalid", _error(403, "This link is not valid for this conversation.")
        elif not rooms.is_live(session_id):
            code, refusal = "session_ended", _error(403, "This conversation has ended.")
        else:
            return None
        await audit_refusal(request, AuditEvent.PATIENT_TOKEN_REJECTED, session_id=session_id, code=code)
        return refusal

    def request_pending(session_id: str, current: EscalationRecord | None) -> bool:
        """The patient asked already and the agent has not yet put a new escalation in the queue."""
        asked = requested.get(session_id)
        now = time.monotonic()
        for stale in [s for s, (at, _) in requested.items() if now - at > REQUEST_PENDING_S]:
            del requested[stale]
        if asked is None or now - asked[0] > REQUEST_PENDING_S:
            return False
        return (current.id if current else None) == asked[1]

    async def ask_for_clinician(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        wait = await patient_requests.hit(client_address(request))
        if wait:
            return AddressLimit.refusal(wait)
        refusal = await room_refusal(request, session_id)
        if refusal is not None:
            return refusal
        current = queue.for_session(session_id)
        if current is not None and current.status in ACTIVE and current.status != HANDED_BACK:
            return _json(room_status(session_id))  # already on its way: asking twice changes nothing
        if request_pending(session_id, current):
            return _json(room_status(session_id))  # asked moments ago: the agent is raising it
        requested[session_id] = (time.monotonic(), current.id if current else None)
        await rooms.request_clinician(session_id)
        audit.record(AuditEvent.PATIENT_REQUESTED_CLINICIAN, session_id=session_id)
        return _json(room_status(session_id), 202)

    async def status(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        refusal = await room_refusal(request, session_id)
        return refusal or _json(room_status(session_id))

    escalation = "/clinician/api/escalations/{id}"
    return [
        Route("/clinician", page),
        Route("/clinician/login", login, methods=["POST"]),
        Route("/clinician/logout", logout, methods=["POST"]),
        Route("/clinician/api/me", me),
        Route("/clinician/api/escalations", escalations),
        Route("/clinician/api/events", events),
        Route(f"{escalation}/claim", claim, methods=["POST"]),
        Route(f"{escalation}/release", release, methods=["POST"]),
        Route(f"{escalation}/join", join, methods=["POST"]),
        Route(f"{escalation}/summary", summary, methods=["POST"]),
        Route(f"{escalation}/hand-back", hand_back, methods=["POST"]),
        Route(f"{escalation}/end", end, methods=["POST"]),
        Route("/api/room/{session_id}/clinician", ask_for_clinician, methods=["POST"]),
        Route("/api/room/{session_id}/status", status),
    ]


def _sse(event: str, data: Any, retry_ms: int | None = None) -> str:
    retry = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    return f"{retry}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
