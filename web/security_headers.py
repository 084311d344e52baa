"""Security headers on every response: the page's CSP, no framing, no sniffing, no referrer, HSTS.

One ASGI middleware around the whole app (``web/app.py``), so the patient page, the clinician
console, the API, static files and even the errors carry the same headers. A header a route set
itself is kept. The pages load only their own files (no inline script or style), so the policy
allows ``'self'`` and nothing inline; ``data:`` images are the escalation's camera frame,
``blob:`` media the WebRTC streams. HSTS is sent outside development (the quick start is http).
"""

from __future__ import annotations

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


def security_headers(app_env: str) -> dict[str, str]:
    """The headers every response gets in ``app_env``."""
    headers = dict(BASE_HEADERS)
    if app_env != "development":
        headers["Strict-Transport-Security"] = HSTS
    return headers


class SecurityHeaders:
    """Adds ``security_headers(app_env)`` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, app_env: str) -> None:
        self.app = app
        self.headers = security_headers(app_env)

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
            await send(message)

        await self.app(scope, receive, send_with_headers)
