"""Helpers for the backend tests: camera frames, and a fake model server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from agent.backends.base import CameraImage


def jpeg(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 120, 100)) -> CameraImage:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="JPEG")
    return CameraImage(out.getvalue(), width, height)


@dataclass
class Received:
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    raw: str


@dataclass
class FakeServer:
    """An HTTP server on 127.0.0.1 that records each request and answers with ``respond``."""

    respond: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends hanging handlers at teardown
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.text()
        self.requests.append(Received(request.path, dict(request.query), json.loads(raw or "{}"), raw))
        assert self.respond is not None
        return await self.respond(request)

    async def hang(self) -> None:
        await self.release.wait()


async def sse(request: web.Request, events: list[str], *, delay_s: float = 0.01,
              then: Callable[[], Awaitable[None]] | None = None) -> web.StreamResponse:  # fmt: skip
    """Server-sent events, one ``data:`` line each, with a pause between them."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(f"data: {event}\r\n\r\n".encode())
        await asyncio.sleep(delay_s)
    if then is not None:
        await then()
    await response.write_eof()
    return response


@dataclass
class FakeHub:
    """Just enough of the Hugging Face Hub's HTTP API for ``snapshot_download`` and ``hf_hub_download``.

    ``repos`` maps a repository id to its files; ``refuse`` answers every request with an HTTP error
    (status, X-Error-Code) the way the hub does for gated and missing repositories.
    """

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refuse: tuple[int, str] | None = None
    commit: str = "0123456789abcdef0123456789abcdef01234567"

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self.refuse is not None:
            status, code = self.refuse
            message = f"Access to this repo is restricted ({code})."
            headers = {"X-Error-Code": code, "X-Error-Message": message}
            return web.json_response({"error": message}, status=status, headers=headers)
        path = request.path
        for repo, files in self.repos.items():
            if path in (f"/api/models/{repo}/revision/main", f"/api/models/{repo}/revision/{self.commit}"):
                siblings = [{"rfilename": name} for name in files]
                return web.json_response({"id": repo, "sha": self.commit, "siblings": siblings})
            if path.startswith(f"/api/models/{repo}/tree/"):
                tree = [{"type": "file", "path": name, "size": len(data), "oid": _oid(data)}
                        for name, data in files.items()]  # fmt: skip
                return web.json_response(tree)
            for prefix in (f"/{repo}/resolve/main/", f"/{repo}/resolve/{self.commit}/"):
                if path.startswith(prefix) and path[len(prefix) :] in files:
                    data = files[path[len(prefix) :]]
                    headers = {"X-Repo-Commit": self.commit, "ETag": f'"{_oid(data)}"'}
                    if request.method == "HEAD":
                        headers["Content-Length"] = str(len(data))
                        return web.Response(status=200, headers=headers)
                    return web.Response(body=data, headers=headers)
        headers = {"X-Error-Code": "EntryNotFound" if "/resolve/" in path else "RepoNotFound"}
        return web.json_response({"error": "not found"}, status=404, headers=headers)


def _oid(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
