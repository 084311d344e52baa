"""A live three-way room in real browsers: the patient escalates, a clinician signs in and joins.

Patient and clinician are two headless Chromiums with fake microphones and cameras, in a
private network namespace with only the loopback interface (ICE on 127.0.0.1).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.browser
RATE = 48000


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (9000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def test_a_clinician_joins_the_patients_room_and_they_hear_and_see_each_other(
    speak: Callable[..., Path], tmp_path: Path
) -> None:
    assert shutil.which("chromium"), "Debian's chromium is needed: scripts/test.sh installs it"
    speech_wav = speak("There is a mole on my back that has started bleeding.", name="redflag")
    speech, rate = sf.read(speech_wav, dtype="int16")
    import soxr

    speech = (soxr.resample(speech.astype(np.float32) / 32768, rate, RATE) * 32767).astype(np.int16)
    # The patient says the red flag once (the file loops only after a minute), then a 1 kHz tone
    # sounds on and off: what the clinician should hear of the patient. Silero does not take a
    # pure tone for speech, so it never talks over the agent.
    patient = tmp_path / "patient.wav"
    beeps = np.concatenate([tone(1000, 1.0), silence(0.5)] * 40)
    sf.write(patient, np.concatenate([silence(4), speech, silence(1), beeps]), RATE)
    clinician = tmp_path / "clinician.wav"
    sf.write(clinician, np.concatenate([tone(600, 1.0), silence(1.0)] * 5), RATE)

    out = tmp_path / "room.json"
    command = (
        f"ip link set lo up && {sys.executable} -m tests.web.room_probe "
        f"--patient-audio {patient} --clinician-audio {clinician} --out {out}"
    )
    proc = subprocess.run(
        ["unshare", "-n", "--", "bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())

    assert "clinician" in result["patient_escalation_message"]
    assert "mole" in result["console_card"]  # the escalation appeared live in the console
    assert result["clinician_heard_patient"]["loudFrames"] >= 10, result["clinician_heard_patient"]
    assert result["patient_heard_clinician"]["loudFrames"] >= 10, result["patient_heard_clinician"]
    assert result["patient_video"]["width"] > 0 and result["patient_video"]["frames"] > 10
    assert "Dr. Okafor has joined" in result["clinician_status_on_patient_page"]
    assert result["clinician_video_on_patient_page"]["shown"]

    agent_text = " ".join(c["text"] for c in result["patient_captions"] if c["cls"] == "agent")
    after_join = agent_text[agent_text.index("is joining now") :]
    assert not re.search(
        r"could be|might be|looks like|Thank you:|clinician has been alerted|\?", after_join
    ), after_join

    [record] = result["escalation_records"]
    assert record["status"] == "joined" and record["clinician"] == "okafor"
    audit = [json.loads(line) for line in result["audit"].splitlines()]
    assert {"sign_in", "claim", "join"} <= {entry["event"] for entry in audit}
    assert "mole" not in result["audit"] and "bleeding" not in result["audit"]
