"""A relay-only patient: headless Chromium through a real coturn to the real server.

Run inside a private network namespace that has a veth pair with ``--address`` on it (the test
sets it up): coturn listens and relays on that address, the server's own peer connection offers
it, and the page is served from 127.0.0.1 (a secure context, as getUserMedia needs). A TURN
server on loopback is no test of the relay: Chromium never finishes gathering against one.
With ``TURN__RELAY_ONLY`` the page asks ``/api/ice-servers`` and gets ``iceTransportPolicy:
"relay"``, so it can only reach the server through coturn.

Two patients, one after the other:
1. a fresh credential: the patient speaks and the agent answers; the probe records the selected
   candidate pair the browser reports (``getStats``);
2. an expired credential (``/api/ice-servers`` answered with a credential minted by the same
   secret, but already past its expiry): the probe records what the page shows within
   ``--refused-within`` seconds.
It writes those, the usernames each page got, and coturn's log, as JSON.
Usage: python -m tests.web.turn_browser_probe --speech WAV --out JSON --address 10.77.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aioice.ice

from tests.web.browser_probe import CHROMIUM_FLAGS, LISTEN_JS, RECORD_PEERS_JS, _free_port, serving

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Route

# The candidate pair the page's connection actually uses, with both ends, from getStats, and
# the ICE servers the page handed its connection.
SELECTED_PAIR_JS = """
async () => {
  const pc = window.__probe.peers[window.__probe.peers.length - 1];
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  });
  if (!pair) return {connectionState: pc.connectionState};
  const end = (c) => c && {type: c.candidateType, address: c.address, port: c.port, protocol: c.protocol,
                          relayProtocol: c.relayProtocol || null, url: c.url || null};
  return {
    connectionState: pc.connectionState,
    local: end(stats.get(pair.localCandidateId)),
    remote: end(stats.get(pair.remoteCandidateId)),
    bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived,
    policy: pc.getConfiguration().iceTransportPolicy,
  };
}
"""

# Test instrumentation: the page's ICE gathering errors (coturn's 401 reaches the page as one).
RECORD_ICE_ERRORS_JS = """
(() => {
  window.__iceErrors = [];
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("icecandidateerror", (e) =>
        window.__iceErrors.push({code: e.errorCode, text: e.errorText, url: e.url}));
    }
  };
})();
"""

PAGE_JS = """
() => ({
  state: document.getElementById("state").textContent,
  stateKind: document.getElementById("state").dataset.state || "",
  error: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
  captions: [...document.querySelectorAll("#captions li")].map((li) =>
    ({cls: li.className, text: li.querySelector(".text").textContent})),
  iceErrors: window.__iceErrors,
  connectionStates: window.__probe.peers.map((pc) => pc.connectionState),
  candidates: window.__probe.peers.map((pc) => (pc.localDescription ? pc.localDescription.sdp : "")
    .split("\\r\\n").filter((l) => l.startsWith("a=candidate:"))),
})
"""


def _offer_only(address: str) -> None:
    """The server's peer connection offers ``address`` (aioice would offer the machine's own)."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address]


async def _open_page(context: BrowserContext, port: int, ice_servers: list[dict]) -> Any:
    """The patient page, recording each ``/api/ice-servers`` answer it gets in ``ice_servers``."""
    page = await context.new_page()
    await page.add_init_script(RECORD_PEERS_JS)
    await page.add_init_script(RECORD_ICE_ERRORS_JS)

    async def record(response: Any) -> None:
        if response.url.endswith("/api/ice-servers") and response.ok:
            ice_servers.append(await response.json())

    page.on("response", record)
    await page.goto(f"http://127.0.0.1:{port}/?processing=off")
    return page


async def _conversation(context: BrowserContext, port: int, seconds: float) -> dict:
    """A patient with a fresh relay credential speaks; the agent greets and answers."""
    ice_servers: list[dict] = []
    page = await _open_page(context, port, ice_servers)
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
    result = {
        "page": await page.evaluate(PAGE_JS),
        "heard": await page.evaluate("() => window.__heard"),
        "selected": await page.evaluate(SELECTED_PAIR_JS),
        "ice_servers": ice_servers,
    }
    await page.click("#stop")
    await page.close()
    return result


async def _expired(context: BrowserContext, port: int, secret: str, within: float) -> dict:
    """A patient whose relay credential has expired: what the page shows within ``within`` s."""
    from media.turn import turn_credential

    ice_servers: list[dict] = []

    async def expire(route: Route) -> None:
        # The server's own answer, with its credential swapped for one that expired a minute ago.
        response = await route.fetch()
        config = await response.json()
        for server in config["iceServers"]:
            if "username" in server:
                tag = server["username"].split(":", 1)[1]
                server["username"], server["credential"] = turn_credential(secret, tag, int(time.time()) - 60)
        await route.fulfill(response=response, json=config)

    await context.route("**/api/ice-servers", expire)
    page = await _open_page(context, port, ice_servers)
    started = time.monotonic()
    await page.click("#start")
    timeline: list[tuple[float, str, str]] = []
    while time.monotonic() - started < within:
        await asyncio.sleep(0.25)
        shown = await page.evaluate(PAGE_JS)
        if not timeline or timeline[-1][1:] != (shown["stateKind"], shown["state"]):
            timeline.append((round(time.monotonic() - started, 2), shown["stateKind"], shown["state"]))
        if shown["stateKind"] == "failed":
            break
    result = {
        "page": await page.evaluate(PAGE_JS),
        "timeline": timeline,
        "seconds": round(time.monotonic() - started, 2),
        "ice_servers": ice_servers,
    }
    await page.close()
    await context.unroute("**/api/ice-servers")
    return result


async def probe(speech: Path, out: Path, address: str, seconds: float, refused_within: float) -> None:
    from playwright.async_api import async_playwright

    from configs.logs import setup_logging
    from configs.settings import hub_offline_environment, load_settings
    from tests.web.turn_server import coturn

    hub_offline_environment()
    _offer_only(address)
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="turn-browser-probe-"))
    result: dict = {"address": address}
    with coturn(work, host=address, verbose=True) as relay:
        settings = load_settings(
            host="127.0.0.1",
            port=port,
            escalations_dir=work / "escalations",
            turn={"urls": [relay.url], "shared_secret": relay.secret, "relay_only": True},
        )
        setup_logging("INFO", "text")
        result["turn_url"] = relay.url
        async with serving(settings), async_playwright() as pw:
            with tempfile.TemporaryDirectory() as profile:
                context = await pw.chromium.launch_persistent_context(
                    profile,
                    executable_path="/usr/bin/chromium",
                    args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={speech}"],
                )
                try:
                    result["conversation"] = await _conversation(context, port, seconds)
                    result["expired"] = await _expired(context, port, relay.secret, refused_within)
                finally:
                    await context.close()
        assert relay.log is not None
        result["coturn_log"] = relay.log.read_text(errors="replace")
    out.write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speech", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--address", required=True, help="this namespace's non-loopback address")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--refused-within", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(probe(args.speech.resolve(), args.out, args.address, args.seconds, args.refused_within))


if __name__ == "__main__":
    main()
