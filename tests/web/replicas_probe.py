"""Two replicas sharing one redis-server behind Debian's HAProxy, and real browsers in front.

Run inside a private network namespace (``unshare -n``, loopback up): the test does that.
Everything is started here and stopped here: ``redis-server``, two replicas (``python -m
tools.loopback_server``: the product as ``python -m web`` builds it, with aioice offering
127.0.0.1), HAProxy running ``configs/haproxy/haproxy.cfg`` (``tools/haproxy_loopback.py``), and
headless Chromiums with fake microphones. Two scenarios, each written as JSON to ``--out``:

- ``room``: a patient (through HAProxy) says a red flag; a clinician whose console is served by
  the other replica (through HAProxy, with that replica's SERVERID cookie) sees it appear, claims
  it and joins; each page listens for the other's tone. A second clinician then tries to claim
  it on each replica (HTTP API).
- ``failover``: a patient (through HAProxy) says a red flag; the replica holding the session is
  killed with SIGKILL; the console of the other replica (HTTP API) shows the session lost, the
  patient's page reconnects by itself through HAProxy, and the escalation is claimed there.

Usage: python -m tests.web.replicas_probe --scenario room|failover --patient-audio WAV
       [--clinician-audio WAV] --out JSON
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from tests.web.browser_probe import CHROMIUM_FLAGS
from tests.web.room_probe import TONE_JS
from tools.capacity import server_env, wait_until_up
from tools.haproxy_loopback import HAProxy, Replica

PASSWORD = "correct horse battery staple"
SECRET = "one key shared by both replicas, long enough"
REGISTRY_TTL_S = 3.0  # a dead replica's sessions are noticed this quickly
EMERGENCY_NUMBER = "112"
CLINICIANS = {"okafor": "Dr. Okafor", "ada": "Dr Ada Lovelace"}
PR_SET_PDEATHSIG = 1

CAPTIONS_JS = (
    "() => [...document.querySelectorAll('#captions li')].map(li => "
    "({cls: li.className, text: li.querySelector('.text').textContent}))"
)


def _die_with_parent() -> None:
    """A child that outlives a probe killed by its timeout would hold ports and CPU: it dies too."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _child(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def until(check: Callable[[], Awaitable[Any]], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.3)
    raise TimeoutError(f"not within {timeout_s:.0f} s: {what}")


class Stack:
    """redis-server, the replicas app-1 and app-2, and HAProxy in front, in ``work``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.children: list[subprocess.Popen] = []
        self.replicas: dict[str, subprocess.Popen] = {}
        self.urls: dict[str, str] = {}
        self.haproxy: HAProxy | None = None

    async def start(self) -> None:
        from argon2 import PasswordHasher

        redis_port = _free_port()
        redis = _child(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.work),
            ],
            self.work / "redis.log",
        )
        self.children.append(redis)
        hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        accounts = [
            {"username": name, "display_name": shown, "password_hash": hasher.hash(PASSWORD)}
            for name, shown in CLINICIANS.items()
        ]
        behind: list[Replica] = []
        for name in ("app-1", "app-2"):
            port, agent_port = _free_port(), _free_port()
            home = self.work / name
            home.mkdir()
            env = {
                **server_env(2, port, home, agent_port),
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "SECRET_KEY": SECRET,
                "REPLICA_ID": name,
                "SESSIONS__REGISTRY_TTL_S": str(REGISTRY_TTL_S),
                "CLINICIAN__ACCOUNTS": json.dumps(accounts),
                "SAFETY__EMERGENCY_NUMBER": EMERGENCY_NUMBER,  # not the default: the page learns it
            }
            process = _child([sys.executable, "-m", "tools.loopback_server"], home / "server.log", env)
            self.children.append(process)
            self.replicas[name] = process
            self.urls[name] = f"http://127.0.0.1:{port}"
            behind.append(Replica(name, port, agent_port))
        for name, process in self.replicas.items():
            async with httpx.AsyncClient(base_url=self.urls[name], timeout=30) as client:
                await wait_until_up(client, process)
        self.haproxy = HAProxy("/usr/sbin/haproxy", self.work, _free_port(), behind, _free_port())
        self.haproxy.start()
        await self.haproxy.wait_for({"app-1": "UP", "app-2": "UP"})

    @property
    def front(self) -> str:
        assert self.haproxy is not None
        return f"http://127.0.0.1:{self.haproxy.port}"

    def kill(self, name: str) -> None:
        os.kill(self.replicas[name].pid, signal.SIGKILL)  # no goodbye, no clean-up of its own
        self.replicas[name].wait(timeout=10)

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for process in reversed(self.children):
            _stop(process)


async def signed_in(url: str, username: str) -> httpx.AsyncClient:
    """A clinician's console on the replica at ``url``, through its HTTP API."""
    console = httpx.AsyncClient(base_url=url, timeout=10)
    me = await console.post("/clinician/login", json={"username": username, "password": PASSWORD})
    me.raise_for_status()
    console.headers["X-CSRF-Token"] = me.json()["csrf"]
    return console


async def launch(pw: Any, profile: str, audio: Path) -> Any:
    return await pw.chromium.launch_persistent_context(
        profile,
        executable_path="/usr/bin/chromium",
        args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={audio}"],
    )


async def landed_on(context: Any) -> str:
    """The replica HAProxy gave this browser (its SERVERID cookie), once it has one."""

    async def cookie() -> str:
        return next((c["value"] for c in await context.cookies() if c["name"] == "SERVERID"), "")

    return await until(cookie, 30, "HAProxy's SERVERID cookie")


async def room(stack: Stack, patient_audio: Path, clinician_audio: Path, result: dict) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as p_profile, tempfile.TemporaryDirectory() as c_profile:
        async with async_playwright() as pw:
            patient_browser = await launch(pw, p_profile, patient_audio)
            patient = await patient_browser.new_page()
            await patient.goto(f"{stack.front}/?processing=off")
            await patient.click("#start")
            await patient.evaluate(TONE_JS, ["agent-audio", 600])
            here = result["patient_replica"] = await landed_on(patient_browser)
            other = next(name for name in stack.urls if name != here)

            # The clinician's console, from the other replica, open before the red flag is said.
            clinician_browser = await launch(pw, c_profile, clinician_audio)
            port = stack.front.rsplit(":", 1)[1]
            await clinician_browser.add_cookies(
                [{"name": "SERVERID", "value": other, "domain": "127.0.0.1", "path": "/"}]
            )
            clinician = await clinician_browser.new_page()
            await clinician.goto(f"http://127.0.0.1:{port}/clinician?processing=off")
            await clinician.fill("#username", "okafor")
            await clinician.fill("#password", PASSWORD)
            await clinician.click("#sign-in")
            await clinician.wait_for_selector("#stream-state[data-state=live]", timeout=20000)
            result["cards_at_sign_in"] = await clinician.locator(".escalation[data-id]").count()
            card = clinician.locator(".escalation[data-id]").first
            await card.wait_for(timeout=90000)  # live: no reload
            result["console_card"] = await card.inner_text()
            result["console_replica"] = await landed_on(clinician_browser)
            escalation_id = await card.get_attribute("data-id")
            await patient.wait_for_selector("#escalation:not([hidden])", timeout=20000)
            result["patient_escalation_message"] = await patient.locator("#escalation").inner_text()

            await card.locator(".claim").click()
            await card.locator(".join").click()
            await clinician.wait_for_selector("#call-state[data-state=connected]", timeout=30000)
            await clinician.evaluate(TONE_JS, ["patient-audio", 1000])

            async def both_heard() -> bool:
                heard = [await p.evaluate("() => window.__tone.loudFrames") for p in (patient, clinician)]
                return min(heard) >= 10

            with contextlib.suppress(TimeoutError):  # what each heard is in the result
                await until(both_heard, 30, "each page hearing the other's tone")
            result["clinician_heard_patient"] = await clinician.evaluate("() => window.__tone")
            result["patient_heard_clinician"] = await patient.evaluate("() => window.__tone")
            result["clinician_status_on_patient_page"] = await patient.locator(
                "#clinician-status"
            ).inner_text()
            result["console_replica_after_join"] = await landed_on(clinician_browser)

            # A second clinician, on each replica: the claim is taken.
            result["second_claims"] = {}
            for name, url in stack.urls.items():
                console = await signed_in(url, "ada")
                try:
                    answer = await console.post(f"/clinician/api/escalations/{escalation_id}/claim")
                    result["second_claims"][name] = {"status": answer.status_code, "body": answer.json()}
                finally:
                    await console.aclose()
            await clinician_browser.close()
            await patient_browser.close()


async def failover(stack: Stack, patient_audio: Path, result: dict) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as p_profile:
        async with async_playwright() as pw:
            patient_browser = await launch(pw, p_profile, patient_audio)
            page = await patient_browser.new_page()
            await page.goto(f"{stack.front}/?processing=off")
            await page.click("#start")
            here = result["patient_replica"] = await landed_on(patient_browser)
            other = next(name for name in stack.urls if name != here)
            await page.wait_for_selector("#escalation:not([hidden])", timeout=90000)
            console = await signed_in(stack.urls[other], "okafor")
            try:

                async def escalation() -> dict | None:
                    listed = (await console.get("/clinician/api/escalations")).json()
                    return listed[0] if listed else None

                async def live(wanted: bool) -> dict | None:
                    record = await escalation()
                    return record if record is not None and record["live"] is wanted else None

                raised = await until(lambda: live(True), 15, "the escalation, live, on the other console")
                result["escalation_before"] = {k: raised[k] for k in ("id", "session_id", "status", "live")}
                await asyncio.sleep(2.0)  # the turn's resume point is written after the turn

                states: list[str] = []
                errors: list[str] = []

                async def note() -> None:
                    state = await page.locator("#state").inner_text()
                    error = await page.locator("#error").inner_text()
                    if not states or states[-1] != state:
                        states.append(state)
                    if error and (not errors or errors[-1] != error):
                        errors.append(error)

                stack.kill(here)
                killed = time.monotonic()
                lost = await until(
                    lambda: live(False), REGISTRY_TTL_S + 15, "the console showing the session lost"
                )
                result["escalation_lost"] = {k: lost[k] for k in ("id", "status", "live")}

                async def reconnected() -> bool:
                    await note()
                    return states[-1].startswith("Reconnected")

                try:
                    await until(reconnected, 75, "the page reconnecting")
                    result["reconnected_after_s"] = round(time.monotonic() - killed, 1)
                    result["landed_after_reconnect"] = await landed_on(patient_browser)

                    async def greeted() -> bool:
                        captions = await page.evaluate(CAPTIONS_JS)
                        return any("cut off" in c["text"] and "carry on" in c["text"] for c in captions)

                    await until(greeted, 45, "the resumed session's whole greeting in the captions")
                    back = await until(lambda: live(True), 20, "the console showing the patient back")
                    result["escalation_after"] = {k: back[k] for k in ("id", "session_id", "status", "live")}
                    claim = await console.post(f"/clinician/api/escalations/{back['id']}/claim")
                    result["claim_on_the_other"] = claim.status_code
                finally:
                    await note()
                    result["states"], result["errors"] = states, errors
                    result["captions"] = await page.evaluate(CAPTIONS_JS)
            finally:
                await console.aclose()
            await page.click("#stop")
            result["state_after_stop"] = await page.locator("#state").inner_text()
            await patient_browser.close()


async def probe(args: argparse.Namespace) -> None:
    from configs.settings import hub_offline_environment

    hub_offline_environment()
    work = Path(tempfile.mkdtemp(prefix="replicas-probe-"))
    result: dict = {"work": str(work)}
    stack = Stack(work)
    try:
        await stack.start()
        result["started"] = True
        if args.scenario == "room":
            await room(stack, args.patient_audio, args.clinician_audio, result)
        else:
            await failover(stack, args.patient_audio, result)
    except Exception as exc:  # noqa: BLE001 - reported in the result, asserted by the test
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stack.stop()
        for log in sorted(work.glob("**/*.log")):
            text = log.read_text(errors="replace")[-3000:]
            result.setdefault("logs", {})[str(log.relative_to(work))] = text
        args.out.write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=["room", "failover"], required=True)
    parser.add_argument("--patient-audio", type=Path, required=True)
    parser.add_argument("--clinician-audio", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.patient_audio = args.patient_audio.resolve()
    if args.clinician_audio:
        args.clinician_audio = args.clinician_audio.resolve()
    import faulthandler

    faulthandler.dump_traceback_later(200, exit=True)
    asyncio.run(probe(args))


if __name__ == "__main__":
    main()
