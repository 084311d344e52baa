"""Admission control: how much one address may ask of the server, and what a full server answers.

- ``AddressLimit``: at most N requests per client address in a moving one-minute window (the
  ``limits`` library, in memory: one process). Used on ``/api/offer``, the patient's clinician
  button and clinician sign-in (``SESSIONS__*_PER_MINUTE``).
- ``BodySizeLimit``: an ASGI middleware that refuses a request body over ``MAX_REQUEST_BYTES``
  with 413, from its Content-Length before reading it, or as soon as the bytes read pass it.
- ``JsonDepthLimit``: an ASGI middleware that refuses, with 400, a body whose JSON nesting is deeper
  than ``MAX_JSON_DEPTH`` before any route parses it (Python's parser overflows its recursion limit
  on a few thousand ``[``, which every route that reads JSON would otherwise answer with a 500).
- ``lines_busy``: the 503 a patient gets when every line is taken (``SESSIONS__MAX_CONCURRENT``):
  it says so, and gives the emergency number.
"""

from __future__ import annotations

import json
import math
import re
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from configs.settings import Settings

# No request of ours nests more than two levels; the JSON parser fails near a thousand.
MAX_JSON_DEPTH = 32
# A string (to its closing quote, or to the end: one pass, never a rescan) or a bracket.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def client_address(request: Request) -> str:
    """The address a request came from (the proxy's, behind one: limits then apply to all of it)."""
    return request.client.host if request.client else "-"


class AddressLimit:
    """At most ``per_minute`` requests per address in a moving one-minute window."""

    def __init__(self, name: str, per_minute: int) -> None:
        self._name = name
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, address: str) -> float:
        """Count one request from ``address``: 0 when it may go on, else seconds until it may."""
        if self._limiter.hit(self._item, self._name, address):
            return 0.0
        reset_at = self._limiter.get_window_stats(self._item, self._name, address).reset_time
        return max(1.0, reset_at - time.time())

    @staticmethod
    def refusal(retry_after_s: float) -> JSONResponse:
        """The 429 that says how long to wait."""
        wait = max(1, math.ceil(retry_after_s))
        return JSONResponse(
            {"error": f"Too many attempts. Try again in {wait} seconds."},
            status_code=429,
            headers={"Retry-After": str(wait), "Cache-Control": "no-store"},
        )


def lines_busy(settings: Settings) -> JSONResponse:
    """503: every line is taken. The patient is told when to retry and what to do in an emergency."""
    number = settings.safety.emergency_number
    retry = settings.sessions.busy_retry_after_s
    message = (
        "All lines are busy right now. Please try again in a few minutes. "
        f"If this is an emergency, call {number} now."
    )
    return JSONResponse(
        {"error": message, "busy": True, "emergency_number": number, "retry_after_s": retry},
        status_code=503,
        headers={"Retry-After": str(retry), "Cache-Control": "no-store"},
    )


class _BodyTooLarge(Exception):
    """Raised from ``receive`` once a body has passed the limit (not a ValueError: no handler eats it)."""


class BodySizeLimit:
    """Refuse any request body over ``max_bytes`` with 413 before it is all read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = 0
            if declared > self.max_bytes:
                await self._refuse(send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await _refuse(send, 413, f"The request is too large (at most {self.max_bytes} bytes).")


def json_nesting(body: bytes) -> int:
    """How deeply the brackets of ``body`` nest outside JSON strings (0 for no brackets)."""
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(body):
        if token.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token.group() in (b"]", b"}"):
            depth = max(0, depth - 1)
    return deepest


class JsonDepthLimit:
    """Refuse a body nested deeper than ``max_depth`` with 400, before any route parses it.

    Sits inside ``BodySizeLimit``, so the body it reads whole is already capped; it hands the
    route the same messages it read, then the live ``receive`` (a stream still hears a disconnect).
    """

    def __init__(self, app: ASGIApp, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        # Fewer brackets than the limit cannot nest deeper (the common case: no scan).
        if body.count(b"[") + body.count(b"{") > self.max_depth and json_nesting(body) > self.max_depth:
            await _refuse(send, 400, f"The request is nested too deeply (at most {self.max_depth} levels).")
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, error: str) -> None:
    """A JSON refusal sent before the route has answered anything."""
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
