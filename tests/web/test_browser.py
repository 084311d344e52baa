"""A real patient: headless Chromium with a fake microphone, talking WebRTC to the server.

Server and browser run together inside a private network namespace (``unshare -n``) with
only the loopback interface, so ICE completes on 127.0.0.1 and nothing leaves the machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.camera import FRAMES_NEEDED_FPS

PROBE = Path(__file__).with_name("browser_probe.py")
pytestmark = pytest.mark.browser


def run_probe(speech: Path, out: Path, seconds: float = 45.0) -> dict:
    assert shutil.which("chromium"), "Debian's chromium is needed: scripts/test.sh installs it"
    command = (
        f"ip link set lo up && {sys.executable} {PROBE} --speech {speech} --out {out} --seconds {seconds}"
    )
    proc = subprocess.run(
        ["unshare", "-n", "--", "bash", "-c", command], capture_output=True, text=True, timeout=seconds + 90
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_a_patient_in_the_browser_hears_the_agent_and_sees_captions(
    speak: Callable[..., Path], tmp_path: Path
) -> None:
    # Chromium plays the file from getUserMedia on and loops it: silence first (the greeting),
    # then the patient, then a long silence for the reply.
    speech = speak("I have a rash on my left arm.", name="patient", lead_s=9.0, tail_s=40.0)
    result = run_probe(speech, tmp_path / "probe.json")

    captions = result["captions"]
    patient = [c["text"].lower() for c in captions if c["cls"] == "patient"]
    agent = [c["text"] for c in captions if c["cls"] == "agent"]
    assert any("rash" in text and "arm" in text for text in patient), captions
    assert len(agent) >= 2, captions  # the greeting and a reply
    assert result["heard"]["max"] > 0.02, "the browser received no audible audio from the agent"
    assert result["heard"]["loudFrames"] > 20
    assert result["state"].startswith("Connected")
    assert result["error"] == ""
    assert "voice_to_voice_latency_seconds_count 1.0" in result["metrics"]

    # The camera is sent at the sampler's rate while only the agent looks, and at the full rate
    # once a clinician joins (the server's "clinician joined" message to the page).
    agent_view, clinician_view = result["camera_agent"], result["camera_clinician"]
    assert agent_view["maxFramerate"] == FRAMES_NEEDED_FPS, agent_view
    assert agent_view["fps"] <= FRAMES_NEEDED_FPS + 0.5, agent_view
    assert clinician_view["maxFramerate"] == 30, clinician_view
    assert clinician_view["fps"] > 2 * FRAMES_NEEDED_FPS, clinician_view
