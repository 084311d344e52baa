"""Admission control: how much one address may ask of the server, and what a full server answers.

- ``AddressLimit``: at most N requests per client address a minute, counted in the shared state
  (``web/shared``: Redis with ``REDIS_URL``, so the limit holds across replicas; else this
  process's memory). Used on ``/api/offer``, the patient's clinician button and clinician sign-in
  (``SESSIONS__*_PER_MINUTE``). If the shared counters fail, each replica counts alone (the
  ``limits`` library's moving window, in memory) until they are back: a Redis outage neither
  refuses every patient nor lifts the limit. Behind a proxy the address is the patient's, from
  ``X-Forwarded-For`` when the proxy is trusted (``FORWARDED_ALLOW_IPS``, given to uvicorn).
- ``BodySizeLimit``: an ASGI middleware that refuses a request body over ``MAX_REQUEST_BYTES``
  with 413, from its Content-Length before reading it, or as soon as the bytes read pass it.
- ``JsonDepthLimit``: an ASGI middleware that refuses, with 400, a body whose JSON nesting is deeper
  than ``MAX_JSON_DEPTH`` before any route parses it (Python's parser overflows its recursion limit
  on a few thousand ``[``, which every route that reads JSON would otherwise answer with a 500).
- ``lines_busy``: the 503 a patient gets when every line is taken (``SESSIONS__MAX_CONCURRENT``):
  it says so, and gives the emergency number.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from configs.settings import Settings
from web.shared import SharedStore, StoreError

log = logging.getLogger(__name__)

# A hung Redis must not hold a patient's offer: past this, the replica counts alone.
SHARED_TIMEOUT_S = 0.5
# No request of ours nests more than two levels; the JSON parser fails near a thousand.
MAX_JSON_DEPTH = 32
# A string (to its closing quote, or to the end: one pass, never a rescan) or a bracket.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def client_address(request: Request) -> str:
    """The address a request came from: the patient's, also behind a trusted proxy (uvicorn reads
    its ``X-Forwarded-For`` for the peers in ``FORWARDED_ALLOW_IPS``); else the proxy's own."""
    return request.client.host if request.client else "-"


def address_key(settings: Settings) -> bytes:
    """The key that hashes addresses in the shared counters: the same on every replica."""
    return settings.secret_key.get_secret_value().encode() if settings.secret_key else b""


class AddressLimit:
    """At most ``per_minute`` requests per address a minute, on every replica together.

    ``shared`` gives the store once the product has opened it (None before: counted here). The
    address is kept in the store only as a keyed hash (``SECRET_KEY``): the counters hold no
    patient's address in the clear.
    """

    WINDOW_S = 60.0

    def __init__(
        self,
        name: str,
        per_minute: int,
        shared: Callable[[], SharedStore | None] = lambda: None,
        key: bytes = b"",
    ) -> None:
        self._name, self._per_minute, self._shared, self._key = name, per_minute, shared, key
        self._item = RateLimitItemPerMinute(per_minute)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared_failing = False

    async def hit(self, address: str) -> float:
        """Count one request from ``address``: 0 when it may go on, else seconds until it may."""
        store = self._shared()
        if store is not None:
            digest = hmac.new(self._key, address.encode(), hashlib.sha256).hexdigest()[:32]
            try:
                hit = await asyncio.wait_for(
                    store.hit(f"rate:{self._name}:{digest}", self.WINDOW_S), SHARED_TIMEOUT_S
                )
            except (StoreError, TimeoutError) as exc:
                if not self._shared_failing:
                    log.warning(
                        "rate limit %s: shared counters failing (%s), counting here",
                        self._name,
                        exc or "no answer in time",
                    )
                self._shared_failing = True
            else:
                if self._shared_failing:
                    log.info("rate limit %s: shared counters back", self._name)
                self._shared_failing = False
                return 0.0 if hit.count <= self._per_minute else max(1.0, hit.window_left_s)
        return self._hit_here(address)

    def _hit_here(self, address: str) -> float:
        if self._local.hit(self._item, self._name, address):
            return 0.0
        reset_at = self._local.get_window_stats(self._item, self._name, address).reset_time
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
