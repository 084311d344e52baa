"""Run the server and a headless Chromium patient together, on loopback only.

Run inside a private network namespace (``unshare -n``): the test does that. The fake
microphone plays ``--speech``; the script writes what the page showed and heard as JSON.
Usage: python tests/web/browser_probe.py --speech WAV --out JSON [--seconds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import aioice.ice
import httpx
import uvicorn

if TYPE_CHECKING:
    from playwright.async_api import Page

    from configs.settings import Settings

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
]

# Measures the loudness of the audio the page receives from the agent.
LISTEN_JS = """
() => {
  window.__heard = {max: 0, loudFrames: 0};
  const attach = () => {
    const el = document.getElementById('agent-audio');
    if (!el.srcObject) { setTimeout(attach, 100); return; }
    const ctx = new AudioContext();
    const src = ctx.createMediaStreamSource(el.srcObject);
    const an = ctx.createAnalyser(); an.fftSize = 2048; src.connect(an);
    const buf = new Float32Array(an.fftSize);
    setInterval(() => {
      an.getFloatTimeDomainData(buf);
      let s = 0; for (const v of buf) s += v * v;
      const rms = Math.sqrt(s / buf.length);
      window.__heard.max = Math.max(window.__heard.max, rms);
      if (rms > 0.01) window.__heard.loudFrames += 1;
    }, 50);
  };
  attach();
}
"""


# Test instrumentation only: keeps the page's peer connection and data channel where the probe
# can reach them (the page itself exposes neither).
RECORD_PEERS_JS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__probe = {peers: [], channels: []};
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__probe.peers.push(this); }
    createDataChannel(...args) {
      const channel = super.createDataChannel(...args);
      window.__probe.channels.push(channel);
      return channel;
    }
  };
})();
"""

# The camera as the page sends it: the sender's frame-rate cap and the frames sent so far.
CAMERA_JS = """
async () => {
  const pc = window.__probe.peers[0];
  const t = pc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === "video");
  if (!t) return null;
  const encoding = t.sender.getParameters().encodings[0] || {};
  let framesSent = 0;
  (await t.sender.getStats()).forEach((r) => {
    if (r.type === "outbound-rtp") framesSent += r.framesSent || 0;
  });
  return {maxFramerate: encoding.maxFramerate ?? null, framesSent, at: performance.now()};
}
"""

# What the server sends the page when a clinician joins (pipeline/clinician_presence.py).
CLINICIAN_JOINED_JS = """
() => window.__probe.channels[0].dispatchEvent(new MessageEvent("message", {data: JSON.stringify({
  label: "rtvi-ai", type: "server-message",
  data: {type: "clinician", status: "joined", name: "Dr. Probe"},
})}))
"""
CAMERA_WINDOW_S = 4.0  # frames counted over this long, at each rate


async def _camera_rate(page: Page) -> dict:
    """The sender's cap and the frames a second it actually sent over ``CAMERA_WINDOW_S``."""
    first = await page.evaluate(CAMERA_JS)
    await asyncio.sleep(CAMERA_WINDOW_S)
    last = await page.evaluate(CAMERA_JS)
    if first is None or last is None:
        return {"maxFramerate": None, "fps": None}
    fps = (last["framesSent"] - first["framesSent"]) / ((last["at"] - first["at"]) / 1000)
    return {"maxFramerate": last["maxFramerate"], "fps": round(fps, 2)}


def _loopback_only() -> None:
    """aioice would offer the machine's own addresses; in the namespace only 127.0.0.1 exists."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[None]:
    """The app on 127.0.0.1:``settings.port`` for the duration of the block."""
    from web.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.port, log_config=None, access_log=False
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(600):  # the server loads the speech models first: at most 30 s
        if server.started:
            break
        await asyncio.sleep(0.05)  # noqa: ASYNC110 - uvicorn exposes no event for this
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


async def probe(speech: Path, seconds: float, out: Path) -> None:
    from configs.logs import setup_logging
    from configs.settings import hub_offline_environment, load_settings

    hub_offline_environment()
    _loopback_only()
    port = _free_port()
    settings = load_settings(host="127.0.0.1", port=port)
    setup_logging("INFO", "text")
    result: dict = {"port": port}
    async with serving(settings):
        result.update(await _patient(speech, seconds, port))
    out.write_text(json.dumps(result, indent=2))


async def _patient(speech: Path, seconds: float, port: int) -> dict:
    from playwright.async_api import async_playwright

    result: dict = {}
    with tempfile.TemporaryDirectory() as profile:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                profile,
                executable_path="/usr/bin/chromium",
                args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={speech}"],
            )
            page = await browser.new_page()
            await page.add_init_script(RECORD_PEERS_JS)
            await page.goto(f"http://127.0.0.1:{port}/?processing=off")
            await page.click("#start")
            await page.evaluate(LISTEN_JS)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                patient = await page.locator("#captions li.patient:not(.interim)").count()
                agent = await page.locator("#captions li.agent").count()
                if patient >= 1 and agent >= 2:
                    await asyncio.sleep(3.0)  # let the reply play
                    break
            result["state"] = await page.locator("#state").inner_text()
            result["captions"] = await page.evaluate(
                "() => [...document.querySelectorAll('#captions li')].map(li => "
                "({cls: li.className, text: li.querySelector('.text').textContent}))"
            )
            result["heard"] = await page.evaluate("() => window.__heard")
            result["error"] = await page.locator("#error").inner_text()
            # The camera while only the agent looks, then once a clinician joins.
            result["camera_agent"] = await _camera_rate(page)
            await page.evaluate(CLINICIAN_JOINED_JS)
            await asyncio.sleep(1.0)  # the new cap takes a moment to reach the encoder
            result["camera_clinician"] = await _camera_rate(page)
            await browser.close()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        result["metrics"] = (await client.get("/metrics")).text
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speech", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    asyncio.run(probe(args.speech.resolve(), args.seconds, args.out))


if __name__ == "__main__":
    main()
