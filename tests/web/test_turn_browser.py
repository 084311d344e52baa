"""A relay-only patient in a real browser: headless Chromium, the real page and server, a real coturn.

With ``TURN__RELAY_ONLY`` the page gives its ``RTCPeerConnection`` ``iceTransportPolicy:
"relay"`` and the TURN credential the server minted for it, so the only way its audio can reach
the agent is through coturn. Everything runs in a private network namespace (``unshare -n``)
with a veth pair on 10.77.0.1/10.77.0.2: a browser does not treat a TURN server on loopback
as it treats a real one (it never finishes gathering), and coturn relays here to a
non-loopback address, as it would in a clinic. The page itself stays on 127.0.0.1 (a secure
context, as getUserMedia needs). The probe (``tests/web/turn_browser_probe.py``) drives it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADDRESS = "10.77.0.1"  # coturn and the server, on one end of the veth pair
NAMESPACE_SETUP = (
    "ip link set lo up && ip link add turn0 type veth peer name turn1 && "
    f"ip addr add {ADDRESS}/24 dev turn0 && ip addr add 10.77.0.2/24 dev turn1 && "
    "ip link set turn0 up && ip link set turn1 up"
)
CONVERSATION_S = 40.0
REFUSED_WITHIN_S = 30.0  # the page gives a first connection 15 s after its offer is answered


def run_probe(speech: Path, out: Path) -> dict:
    assert shutil.which("chromium"), "Debian's chromium is needed: scripts/test.sh installs it"
    assert shutil.which("ip"), "iproute2's ip is needed for the namespace's veth pair"
    command = (
        f"{NAMESPACE_SETUP} && {sys.executable} -m tests.web.turn_browser_probe --speech {speech} "
        f"--out {out} --address {ADDRESS} --seconds {CONVERSATION_S} --refused-within {REFUSED_WITHIN_S}"
    )
    proc = subprocess.run(
        ["unshare", "-n", "--", "bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=CONVERSATION_S + REFUSED_WITHIN_S + 90,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_a_relay_only_browser_talks_to_the_agent_through_coturn_and_an_expired_credential_is_refused(
    speak: Callable[..., Path], tmp_path: Path
) -> None:
    # Silence first (the greeting), then the patient once, then a long silence for the reply.
    speech = speak("I have a rash on my left arm.", name="patient", lead_s=9.0, tail_s=40.0)
    result = run_probe(speech, tmp_path / "probe.json")
    log = result["coturn_log"]

    # The page was told to use the relay only, with a credential the server minted for it.
    talk = result["conversation"]
    [config] = talk["ice_servers"]
    assert config["iceTransportPolicy"] == "relay"
    [server] = config["iceServers"]
    assert server["urls"] == [result["turn_url"]]
    assert expiry(server["username"]) > time.time()

    # The patient hears the agent, and the captions show both sides of the conversation.
    captions = talk["page"]["captions"]
    patient = [c["text"].lower() for c in captions if c["cls"] == "patient"]
    agent = [c["text"] for c in captions if c["cls"] == "agent"]
    assert any("rash" in text and "arm" in text for text in patient), captions
    assert len(agent) >= 2, captions  # the greeting and a reply
    assert talk["heard"]["max"] > 0.02, "the browser received no audible audio from the agent"
    assert talk["heard"]["loudFrames"] > 20
    assert talk["page"]["stateKind"] == "connected" and talk["page"]["error"] == ""

    # ...and all of it went through coturn: the browser offered nothing but relayed candidates,
    # and the pair it used is its relayed address on coturn, towards the server's own address.
    [offered] = talk["page"]["candidates"]
    assert offered and all(" typ relay " in line for line in offered), offered
    selected = talk["selected"]
    assert selected["policy"] == "relay"
    assert selected["local"]["type"] == "relay", selected
    assert selected["local"]["url"] == result["turn_url"], selected
    assert selected["remote"]["address"] == ADDRESS, selected
    assert selected["bytesSent"] > 10_000 and selected["bytesReceived"] > 10_000, selected
    # coturn allocated that very relayed address for the page's credential and let the server in.
    session = allocation(log, f"{ADDRESS}:{selected['local']['port']}")
    assert f"username=<{server['username']}>" in session["new"]
    assert any("CREATE_PERMISSION processed, success" in line for line in session["lines"]), session
    assert any(f"peer {ADDRESS} lifetime updated" in line for line in session["lines"]), session

    # A credential past its expiry (signed with the right secret): coturn refuses every
    # allocation, the page offers no candidate at all and never connects.
    refused = result["expired"]
    [config] = refused["ice_servers"]
    assert config["iceTransportPolicy"] == "relay"
    [server] = config["iceServers"]
    assert expiry(server["username"]) < time.time()
    assert refused["page"]["iceErrors"], "the page saw no error from the relay"
    assert {error["code"] for error in refused["page"]["iceErrors"]} == {401}, refused["page"]["iceErrors"]
    assert refused["page"]["candidates"] and not any(refused["page"]["candidates"]), refused["page"]
    assert all(kind != "connected" for _, kind, _ in refused["timeline"]), refused["timeline"]
    assert refused["page"]["captions"] == []
    # The page says it could not connect (not "Connecting..." for ever), with what to do.
    assert refused["page"]["stateKind"] == "failed" and refused["page"]["error"], refused["page"]
    assert f"Cannot find credentials of user <{server['username']}>" in log
    assert re.search(rf"user <{re.escape(server['username'])}>: .* error 401: Unauthorized", log)
    assert f"username=<{server['username']}>" not in log  # no allocation for it, ever


def expiry(username: str) -> int:
    """The expiry (unix seconds) that a TURN REST API username carries before its first ``:``."""
    return int(username.split(":", 1)[0])


def allocation(log: str, relayed: str) -> dict:
    """coturn's log lines about the allocation whose relayed address is ``relayed``.

    coturn writes ``Local relay addr: A`` and then ``session S: new, ... username=<U>``.
    """
    lines = log.splitlines()
    for index, line in enumerate(lines[:-1]):
        if line.endswith(f"Local relay addr: {relayed}"):
            new = lines[index + 1]
            found = re.search(r"session (\d+): new,", new)
            assert found, new
            session = f"session {found.group(1)}:"
            return {"new": new, "lines": [other for other in lines if session in other]}
    raise AssertionError(f"coturn allocated no relayed address {relayed}")
