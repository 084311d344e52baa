"""Two replicas, Redis and HAProxy, and real browsers: the issue's two end-to-end checks.

Everything runs inside one private network namespace with only the loopback interface
(``unshare -n``, ICE on 127.0.0.1): redis-server, two replicas of the product (``python -m
tools.loopback_server``), Debian's HAProxy running ``configs/haproxy/haproxy.cfg``, and headless
Chromiums with fake microphones (``tests/web/replicas_probe.py`` drives them).

- A patient lands on one replica and says a red flag; a clinician whose console is served by the
  other replica sees it appear live, claims it and joins; both hear each other; a second
  clinician's claim fails on either replica.
- The patient's replica is killed mid-session: the escalation stays claimable on the other, and
  the patient's page reconnects by itself through HAProxy to the live replica, which resumes the
  interview with what it knew.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.debian_tools import debian_tool
from tests.web.replicas_probe import EMERGENCY_NUMBER

pytestmark = [pytest.mark.browser, pytest.mark.slow]
RATE = 48000
RED_FLAG = "There is a mole on my back that has started bleeding."
ROOT = Path(__file__).resolve().parents[2]


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (9000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def red_flag(speak: Callable[..., Path]) -> np.ndarray:
    import soxr

    speech, rate = sf.read(speak(RED_FLAG, name="redflag"), dtype="int16")
    return (soxr.resample(speech.astype(np.float32) / 32768, rate, RATE) * 32767).astype(np.int16)


def run_probe(scenario: str, out: Path, **audio: Path) -> dict:
    """The probe in its own network namespace; what it saw, with the stack's logs on a failure."""
    assert shutil.which("chromium"), "Debian's chromium is needed: scripts/test.sh installs it"
    debian_tool("haproxy", "haproxy")
    debian_tool("redis-server", "redis-server")
    files = " ".join(f"--{name.replace('_', '-')} {path}" for name, path in audio.items())
    command = (
        f"ip link set lo up && {sys.executable} -m tests.web.replicas_probe "
        f"--scenario {scenario} {files} --out {out}"
    )
    proc = subprocess.run(
        ["unshare", "-n", "--", "bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    logs = "\n".join(f"--- {name}\n{text}" for name, text in result.get("logs", {}).items())
    assert "error" not in result, f"{result['error']}\n{json.dumps(result, indent=1)[:6000]}\n{logs}"
    return result


def test_a_clinician_on_the_other_replica_sees_the_red_flag_live_claims_it_and_joins(
    speak: Callable[..., Path], tmp_path: Path
) -> None:
    # The patient: a long silence (the greeting; the console opens meanwhile), the red flag, then
    # a 1 kHz tone on and off (what the clinician should hear; Silero does not take it for speech).
    patient = tmp_path / "patient.wav"
    beeps = np.concatenate([tone(1000, 1.0), silence(0.5)] * 60)
    sf.write(patient, np.concatenate([silence(12), red_flag(speak), silence(1), beeps]), RATE)
    clinician = tmp_path / "clinician.wav"
    sf.write(clinician, np.concatenate([tone(600, 1.0), silence(1.0)] * 10), RATE)

    result = run_probe("room", tmp_path / "room.json", patient_audio=patient, clinician_audio=clinician)

    here, there = result["patient_replica"], result["console_replica"]
    assert {here, there} == {"app-1", "app-2"}, result  # the console came from the other replica
    assert result["console_replica_after_join"] == there
    assert result["cards_at_sign_in"] == 0  # the card arrived while the console was open
    assert "mole" in result["console_card"]
    assert "clinician" in result["patient_escalation_message"]
    assert result["clinician_heard_patient"]["loudFrames"] >= 10, result["clinician_heard_patient"]
    assert result["patient_heard_clinician"]["loudFrames"] >= 10, result["patient_heard_clinician"]
    assert "Dr. Okafor has joined" in result["clinician_status_on_patient_page"]
    for replica, claim in result["second_claims"].items():
        assert claim["status"] == 409, (replica, claim)
        assert claim["body"]["claimed_by"] == "Dr. Okafor", (replica, claim)


def test_the_patients_page_reconnects_to_the_live_replica_and_the_interview_resumes(
    speak: Callable[..., Path], tmp_path: Path
) -> None:
    patient = tmp_path / "patient.wav"
    sf.write(patient, np.concatenate([silence(8), red_flag(speak), silence(150)]), RATE)

    result = run_probe("failover", tmp_path / "failover.json", patient_audio=patient)

    before, lost, after = result["escalation_before"], result["escalation_lost"], result["escalation_after"]
    assert lost["id"] == before["id"] and lost["live"] is False  # the other console: session lost
    # The page said so, with the emergency number, while it reconnected by itself.
    assert "Reconnecting…" in result["states"], result["states"]
    assert any("Connection lost" in e and EMERGENCY_NUMBER in e for e in result["errors"]), result["errors"]
    assert result["states"][-1].startswith("Reconnected"), result["states"]
    assert result["landed_after_reconnect"] != result["patient_replica"]
    # The same session and escalation, resumed with what the agent knew.
    assert after["id"] == before["id"] and after["session_id"] == before["session_id"]
    assert after["live"] is True
    greeting = next(c["text"] for c in result["captions"] if "cut off" in c["text"])
    assert "mole" in greeting.lower() and "bleeding" in greeting.lower(), greeting
    assert result["claim_on_the_other"] == 200  # still claimable, on the surviving replica
    assert result["state_after_stop"] == "Ended"
