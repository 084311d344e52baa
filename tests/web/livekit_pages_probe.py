"""The pages against a server in LiveKit mode, with a fake LiveKit signalling endpoint on loopback.

No LiveKit server can run here. The fake answers where the browser SDK connects (``<url>/rtc``,
``<url>/rtc/v1`` websockets, and the ``…/validate`` HTTP probe) and records the ``access_token``
of every attempt; it speaks none of LiveKit's protocol, so no media flows. The agent's side is the
fake ``livekit.rtc`` of ``tests/media/livekit_fakes.py`` and a pass-through pipeline. Headless
Chromium then presses "Start talking" on the patient page, and a clinician signs in to the
console, claims the escalation and joins. Writes what the server answered and what reached the
fake as JSON.
Usage (in ``unshare -n``, from the repo root): python -m tests.web.livekit_pages_probe --out JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.web.browser_probe import CHROMIUM_FLAGS, _free_port

WAIT_S = 20.0


def fake_livekit_server(attempts: list[dict]) -> Starlette:
    """Records every signalling connection and validate probe, and refuses it."""

    async def signal(websocket: WebSocket) -> None:
        attempts.append({"path": websocket.url.path, "token": websocket.query_params.get("access_token")})
        await websocket.close(code=1011)

    async def validate(request: Request) -> PlainTextResponse:
        attempts.append({"path": request.url.path, "token": request.query_params.get("access_token")})
        return PlainTextResponse("no LiveKit here", status_code=500)

    return Starlette(
        routes=[
            WebSocketRoute("/rtc", signal),
            WebSocketRoute("/rtc/v1", signal),
            Route("/rtc/validate", validate),
            Route("/rtc/v1/validate", validate),
        ]
    )


async def until(condition, within: float = WAIT_S) -> bool:  # noqa: ANN001 - a small local helper
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return condition()


async def probe(out: Path) -> None:
    from livekit import rtc

    from tests.media.livekit_fakes import KEY, SECRET, FakeAudioStream, FakeLocalTrack, FakeRoom, FakeSource
    from tests.web.test_livekit_routes import LightHost, clinic_settings, escalation
    from web.product import build_product

    patches = pytest.MonkeyPatch()  # the agent's connection: the fake livekit.rtc
    patches.setattr(rtc, "Room", FakeRoom)
    patches.setattr(rtc, "AudioSource", FakeSource)
    patches.setattr(rtc, "LocalAudioTrack", FakeLocalTrack)
    patches.setattr(rtc, "AudioStream", FakeAudioStream)

    attempts: list[dict] = []
    fake_port, port = _free_port(), _free_port()
    fake = uvicorn.Server(
        uvicorn.Config(fake_livekit_server(attempts), host="127.0.0.1", port=fake_port, log_config=None)
    )
    fake_task = asyncio.create_task(fake.serve())
    work = Path(tempfile.mkdtemp())
    url = f"ws://127.0.0.1:{fake_port}"
    livekit = {"enabled": True, "url": url, "api_key": KEY, "api_secret": SECRET, "token_ttl_s": 120}
    settings = clinic_settings(
        work, host="127.0.0.1", port=port, livekit=livekit, sessions={"connect_deadline_s": 120}
    )
    product = replace(build_product(settings, phone=False), host=LightHost(settings))
    result: dict = {"livekit_url": url, "responses": []}
    from web.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, product), host="127.0.0.1", port=port, log_config=None)
    )
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started and fake.started)
    try:
        result.update(await _browser(port, product, escalation, attempts, result["responses"]))
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)
    result["attempts"] = attempts
    fake.should_exit = True
    await asyncio.wait_for(fake_task, timeout=10)
    out.write_text(json.dumps(result, indent=2))


async def _browser(port: int, product, escalation, attempts: list[dict], responses: list) -> dict:  # noqa: ANN001
    from playwright.async_api import Response, async_playwright

    from tests.web.test_auth import PASSWORD

    result: dict = {}

    async def keep(response: Response) -> None:
        if "/api/livekit/session" in response.url or response.url.split("?")[0].endswith("/join"):
            responses.append({"url": response.url, "status": response.status, "body": await response.json()})

    with tempfile.TemporaryDirectory() as profile:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                profile, executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
            )
            page = await browser.new_page()
            page.on("response", keep)
            result["csp"] = (await page.goto(f"http://127.0.0.1:{port}/?processing=off")).headers.get(
                "content-security-policy"
            )
            await page.click("#start")
            await until(lambda: any(a["token"] for a in attempts))
            await asyncio.sleep(2.0)  # the SDK's own retries and the page's answer to the failure
            result["patient_state"] = await page.locator("#state").inner_text()
            result["patient_error"] = await page.locator("#error").inner_text()
            sessions = [r for r in responses if r["url"].endswith("/api/livekit/session")]
            if sessions:  # the console: claim the escalation of that session, and join
                await product.queue.add(escalation(sessions[0]["body"]["session_id"]))
                console = await browser.new_page()
                console.on("response", keep)
                await console.goto(f"http://127.0.0.1:{port}/clinician?processing=off")
                await console.fill("#username", "ada")
                await console.fill("#password", PASSWORD)
                await console.click("#sign-in")
                await console.click("button.claim", timeout=WAIT_S * 1000)
                await console.click("button.join", timeout=WAIT_S * 1000)
                await until(lambda: any(r["url"].split("?")[0].endswith("/join") for r in responses))
                tokens = [
                    r["body"].get("token") for r in responses if r["url"].split("?")[0].endswith("/join")
                ]
                await until(lambda: any(a["token"] in tokens for a in attempts))
                await asyncio.sleep(2.0)
                result["console_state"] = await console.locator("#call-state").inner_text()
                result["console_error"] = await console.locator("#error").inner_text()
            await browser.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(probe(args.out))


if __name__ == "__main__":
    main()
