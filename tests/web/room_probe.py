"""A patient and a clinician, two headless Chromiums, in one live room, on loopback only.

Run inside a private network namespace (``unshare -n``): the test does that.
The patient's fake microphone plays ``--patient-audio`` (a red flag, then a 1 kHz tone); the
clinician's plays ``--clinician-audio`` (a 600 Hz tone). Each page listens to what it
receives for its peer's tone, so the test knows who heard whom. Writes what happened as JSON.
Usage: python -m tests.web.room_probe --patient-audio WAV --clinician-audio WAV --out JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from tests.web.browser_probe import CHROMIUM_FLAGS, _free_port, _loopback_only, serving

PASSWORD = "correct horse battery staple"

# Counts the moments a received track carries a steady tone at ``freq`` (a narrow spectral
# peak well above its neighbourhood): speech does not, a peer's tone does.
TONE_JS = """
([elementId, freq]) => {
  window.__tone = {frames: 0, loudFrames: 0};
  const attach = () => {
    const el = document.getElementById(elementId);
    if (!el.srcObject || !el.srcObject.getAudioTracks().length) { setTimeout(attach, 100); return; }
    const ctx = new AudioContext();
    const src = ctx.createMediaStreamSource(el.srcObject);
    const an = ctx.createAnalyser(); an.fftSize = 4096; src.connect(an);
    const bins = new Float32Array(an.frequencyBinCount);
    const binOf = (f) => Math.round(f / (ctx.sampleRate / an.fftSize));
    setInterval(() => {
      an.getFloatFrequencyData(bins);
      const peak = Math.max(...[-1, 0, 1].map((d) => bins[binOf(freq) + d]));
      const around = [-300, -200, 200, 300].map((d) => bins[binOf(freq + d)]);
      window.__tone.frames += 1;
      if (peak > -70 && peak > Math.max(...around) + 20) window.__tone.loudFrames += 1;
    }, 50);
  };
  attach();
}
"""


async def probe(patient_audio: Path, clinician_audio: Path, seconds: float, out: Path, debug: bool) -> None:
    from argon2 import PasswordHasher

    from configs.logs import setup_logging
    from configs.settings import ClinicianAccount, hub_offline_environment, load_settings

    hub_offline_environment()
    _loopback_only()
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="room-probe-"))
    account = ClinicianAccount(
        username="okafor", display_name="Dr. Okafor", password_hash=PasswordHasher().hash(PASSWORD)
    )
    settings = load_settings(
        host="127.0.0.1",
        port=port,
        escalations_dir=work / "escalations",
        clinician={
            "accounts": [account],
            "accounts_file": work / "clinicians.json",
            "audit_log": work / "audit",
        },
    )
    setup_logging("INFO", "text")
    if debug:
        import sys

        from loguru import logger

        logger.add(sys.stderr, level="DEBUG")
    result: dict = {}
    async with serving(settings):
        await _room(f"http://127.0.0.1:{port}", patient_audio, clinician_audio, seconds, result)
    result["escalation_records"] = [json.loads(p.read_text()) for p in (work / "escalations").glob("*.json")]
    result["audit"] = (work / "audit").read_text() if (work / "audit").exists() else ""
    out.write_text(json.dumps(result, indent=2))


async def _room(base: str, patient_audio: Path, clinician_audio: Path, seconds: float, result: dict) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as p_profile, tempfile.TemporaryDirectory() as c_profile:
        async with async_playwright() as pw:
            patient_browser = await pw.chromium.launch_persistent_context(
                p_profile,
                executable_path="/usr/bin/chromium",
                args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={patient_audio}"],
            )
            patient = await patient_browser.new_page()
            await patient.goto(f"{base}/?processing=off")
            await patient.click("#start")
            await patient.evaluate(TONE_JS, ["agent-audio", 600])

            # The red flag: the patient's page says a clinician is on the way.
            await patient.wait_for_selector("#escalation:not([hidden])", timeout=seconds * 1000)
            result["patient_escalation_message"] = await patient.locator("#escalation").inner_text()

            clinician_browser = await pw.chromium.launch_persistent_context(
                c_profile,
                executable_path="/usr/bin/chromium",
                args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={clinician_audio}"],
                bypass_csp=True,
            )
            clinician = await clinician_browser.new_page()
            await clinician.goto(f"{base}/clinician?processing=off")
            await clinician.fill("#username", "okafor")
            await clinician.fill("#password", PASSWORD)
            await clinician.click("#sign-in")
            card = clinician.locator(".escalation[data-id]").first
            await card.wait_for(timeout=20000)
            result["console_card"] = await card.inner_text()
            await card.locator(".claim").click()
            await card.locator(".join").click()
            await clinician.wait_for_selector("#call-state[data-state=connected]", timeout=20000)
            await clinician.evaluate(TONE_JS, ["patient-audio", 1000])
            joined_at = time.monotonic()

            # Let the room run: the patient's tone loops, the clinician's tone loops.
            try:
                await patient.wait_for_function(
                    "() => [...document.querySelectorAll('#captions li.agent')].some(li => "
                    "li.textContent.includes('is joining now'))",
                    timeout=20000,
                )
            except Exception as exc:  # noqa: BLE001 - reported in the result, asserted by the test
                result["error"] = f"no announcement: {exc}"
            await asyncio.sleep(max(0.0, 14.0 - (time.monotonic() - joined_at)))
            result["clinician_heard_patient"] = await clinician.evaluate("() => window.__tone")
            result["patient_heard_clinician"] = await patient.evaluate("() => window.__tone")
            result["patient_video"] = await clinician.evaluate(
                "() => { const v = document.getElementById('patient-video'); "
                "return {width: v.videoWidth, frames: v.getVideoPlaybackQuality().totalVideoFrames}; }"
            )
            result["clinician_status_on_patient_page"] = await patient.locator(
                "#clinician-status"
            ).inner_text()
            result["clinician_video_on_patient_page"] = await patient.evaluate(
                "() => { const f = document.getElementById('clinician-figure'); "
                "const v = document.getElementById('clinician-video'); "
                "return {shown: !f.hidden, width: v.videoWidth}; }"
            )
            result["patient_captions"] = await patient.evaluate(
                "() => [...document.querySelectorAll('#captions li')].map(li => "
                "({cls: li.className, text: li.querySelector('.text').textContent}))"
            )
            await clinician_browser.close()
            await patient_browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patient-audio", type=Path, required=True)
    parser.add_argument("--clinician-audio", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--debug", action="store_true", help="pipecat's debug log to stderr")
    args = parser.parse_args()
    import faulthandler

    faulthandler.dump_traceback_later(150, exit=True)
    asyncio.run(
        probe(
            args.patient_audio.resolve(), args.clinician_audio.resolve(), args.seconds, args.out, args.debug
        )
    )


if __name__ == "__main__":
    main()
