"""The pages in LiveKit mode (``LIVEKIT__ENABLED``): headless Chromium joins with the server's tokens.

No LiveKit server can run here, so ``livekit_pages_probe.py`` runs a fake signalling endpoint
at ``LIVEKIT__URL`` on loopback that records the ``access_token`` of each connection attempt
(it completes no LiveKit handshake: no media flows, and none is asserted). What is checked is
the page side: "Start talking" asked this server for a LiveKit session (not a WebRTC offer), the
browser's SDK went to the LiveKit URL with exactly the patient token the server minted for that
room (grants checked with LiveKit's own verifier), the page CSP lets it connect there, and the
console's join of the claimed escalation connects with the clinician token the join answered.
Server and browser run in a private network namespace (``unshare -n``) with loopback only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.media.livekit_fakes import claims_of

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.browser, pytest.mark.slow]


def run_probe(out: Path) -> dict:
    assert shutil.which("chromium"), "Debian's chromium is needed: scripts/test.sh installs it"
    command = f"ip link set lo up && {sys.executable} -m tests.web.livekit_pages_probe --out {out}"
    proc = subprocess.run(
        ["unshare", "-n", "--", "bash", "-c", command], capture_output=True, text=True, timeout=150, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_pages_join_livekit_rooms_with_the_tokens_the_server_minted(tmp_path: Path) -> None:
    result = run_probe(tmp_path / "probe.json")
    url = result["livekit_url"]
    sessions = [r for r in result["responses"] if r["url"].endswith("/api/livekit/session")]
    assert len(sessions) == 1 and sessions[0]["status"] == 200, result["responses"]
    session = sessions[0]["body"]
    assert session["url"] == url
    assert url in result["csp"] and url.replace("ws://", "http://") in result["csp"], result["csp"]

    # The patient's browser went to the LiveKit URL with exactly that token: for that room only.
    signalling = [a for a in result["attempts"] if a["path"] in ("/rtc", "/rtc/v1")]
    tokens = {a["token"] for a in signalling}
    assert session["token"] in tokens, result["attempts"]
    claims = claims_of(session["token"])
    assert claims.identity.startswith("patient-")
    assert claims.video.room == session["session_id"] and claims.video.room_join
    assert claims.video.can_subscribe and claims.video.can_publish_sources == ["microphone", "camera"]
    # The fake refuses every connection: the page says it could not connect, it does not hang.
    assert result["patient_state"] == "Could not connect", result
    assert result["patient_error"].startswith("The assistant could not be reached")

    # The console's join of the claimed escalation: the clinician token for the same room.
    joins = [r for r in result["responses"] if r["url"].split("?")[0].endswith("/join")]
    assert len(joins) == 1 and joins[0]["status"] == 200, result["responses"]
    clinician_token = joins[0]["body"]["token"]
    assert clinician_token in tokens, result["attempts"]
    clinician = claims_of(clinician_token)
    assert clinician.identity.startswith("clinician-") and clinician.name == "Dr Ada"
    assert clinician.video.room == session["session_id"]
    assert tokens <= {session["token"], clinician_token}  # no other token went to LiveKit
    assert result["console_state"] == "Could not connect", result
