"""Security headers on every response: the page's CSP, no framing, no sniffing, no referrer, HSTS.

One ASGI middleware around the whole app (``web/app.py``), so the patient page, the clinician
console, the API, static files and even the errors carry the same headers. A header a route set
itself is kept. The pages load only their own files (no inline script or style), so the policy
allows ``'self'`` and nothing inline; ``data:`` images are the escalation's camera frame,
``blob:`` media the WebRTC streams. HSTS is sent outside development (the quick start is http).
With LiveKit rooms (``LIVEKIT__ENABLED``) the pages also connect to the LiveKit server (its
signalling websocket and its HTTP probe), so that one origin is added to every ``connect-src``,
the console's own policy included; nothing else is.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
BASE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"
CONNECT_SELF = "connect-src 'self'"


def livekit_origins(url: str | None) -> tuple[str, ...]:
    """Where a page's LiveKit SDK connects for ``url``: the websocket and the HTTP origin of its host."""
    if not url:
        return ()
    parts = urlsplit(url)
    secure = parts.scheme.lower() in ("wss", "https")
    return (
        f"{'wss' if secure else 'ws'}://{parts.netloc}",
        f"{'https' if secure else 'http'}://{parts.netloc}",
    )


def security_headers(app_env: str) -> dict[str, str]:
    """The headers every response gets in ``app_env``."""
    headers = dict(BASE_HEADERS)
    if app_env != "development":
        headers["Strict-Transport-Security"] = HSTS
    return headers


class SecurityHeaders:
    """Adds ``security_headers(app_env)`` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, app_env: str, livekit_url: str | None = None) -> None:
        self.app = app
        self.headers = security_headers(app_env)
        origins = livekit_origins(livekit_url)
        self.connect = " ".join((CONNECT_SELF, *origins)) if origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
                csp = headers.get("content-security-policy")
                if self.connect and csp and CONNECT_SELF in csp:
                    headers["Content-Security-Policy"] = csp.replace(CONNECT_SELF, self.connect, 1)
            await send(message)

        await self.app(scope, receive, send_with_headers)
