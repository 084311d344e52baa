"""Phone at scale: Debian's Kamailio with configs/kamailio/kamailio.cfg in front of two bridges.

Everything on 127.0.0.1: two real bridges (``python -m web.phone``, the product's entry point,
each with its own SIP and RTP ports), Kamailio started here with the project's one config (the
bridge list, listen port and probe interval given as ``-A`` defines), and SIPp calling through
Kamailio. Calls are spread over both bridges; once one bridge stops, Kamailio's OPTIONS probes
take it out of rotation and every call is still answered, by the other one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.media.sip import support as sipp
from tests.media.sip.conftest import free_rtp_range

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "configs" / "kamailio" / "kamailio.cfg"
READY_WITHIN_S = 240.0  # two bridges loading the speech models at once on a busy machine
PROBE_INTERVAL_S = 1


def kamailio_binaries() -> tuple[str, str]:
    """Debian's ``kamailio`` and ``kamcmd`` (in /usr/sbin, often not on a user's PATH)."""
    found = []
    for name in ("kamailio", "kamcmd"):
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        assert path, "Kamailio is needed: apt-get install kamailio (scripts/test.sh installs it)"
        found.append(path)
    return found[0], found[1]


def module_dir() -> Path:
    """Where Debian put Kamailio's modules (the multiarch folder differs by machine)."""
    candidates = sorted(Path("/usr/lib").glob("*/kamailio/modules")) + [Path("/usr/lib/kamailio/modules")]
    for folder in candidates:
        if (folder / "dispatcher.so").exists():
            return folder
    raise AssertionError("Kamailio's dispatcher module was not found under /usr/lib")


@dataclass
class Bridge:
    name: str
    port: int
    process: asyncio.subprocess.Process
    log: Path

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_bridge(folder: Path, name: str) -> Bridge:
    """One bridge process; it takes calls only from Kamailio's address (127.0.0.1)."""
    folder.mkdir(parents=True)
    port = sipp.free_udp_port()
    low, high = free_rtp_range()
    env = {
        **os.environ,
        "APP_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "SIP__ENABLED": "true",
        "SIP__HOST": "127.0.0.1",
        "SIP__PORT": str(port),
        "SIP__TRANSPORTS": '["udp"]',
        "SIP__RTP_PORT_MIN": str(low),
        "SIP__RTP_PORT_MAX": str(high),
        "SIP__ALLOWED_PEERS": '["127.0.0.1/32"]',
        "SESSIONS__MAX_CONCURRENT": "8",  # lines stay busy while a hung-up session winds down
        "ESCALATIONS_DIR": str(folder / "escalations"),
        "CLINICIAN__AUDIT_LOG": str(folder / "audit.log"),
    }
    log = folder / "bridge.log"
    with log.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "web.phone", cwd=REPO_ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=errors,
        )  # fmt: skip
    return Bridge(name, port, process, log)


async def wait_ready(bridge: Bridge) -> None:
    assert bridge.process.stdout is not None
    try:
        line = await asyncio.wait_for(bridge.process.stdout.readline(), READY_WITHIN_S)
    except TimeoutError:
        line = b""
    assert b"SIP bridge ready" in line, bridge.log.read_text(errors="replace")[-3000:]


@dataclass
class Kamailio:
    port: int
    ctl: str
    kamcmd: str
    process: asyncio.subprocess.Process
    log: Path

    async def destinations(self) -> dict[int, str]:
        """The dispatcher's view: each bridge's port and its flags (``AP`` in rotation, ``IP`` out)."""
        process = await asyncio.create_subprocess_exec(
            self.kamcmd, "-s", self.ctl, "dispatcher.list",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 10)
        text = output.decode(errors="replace")
        found = re.findall(r"URI:\s*sip:127\.0\.0\.1:(\d+)\S*\s+FLAGS:\s*(\w+)", text)
        return {int(port): flags for port, flags in found}

    async def wait_for(self, wanted: dict[int, str], within: float) -> dict[int, str]:
        """Poll the dispatcher until each listed bridge's flags start with the wanted state (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        seen: dict[int, str] = {}
        while loop.time() < deadline:
            seen = await self.destinations()
            if all(seen.get(port, "").startswith(state) for port, state in wanted.items()):
                return seen
            await asyncio.sleep(0.25)
        return seen


@contextlib.asynccontextmanager
async def kamailio(folder: Path, bridges: list[Bridge]) -> AsyncIterator[Kamailio]:
    """Debian's Kamailio in the foreground with the project's config, bridges from a list made here."""
    binary, kamcmd = kamailio_binaries()
    folder.mkdir(parents=True)
    listed = folder / "dispatcher.list"
    listed.write_text("".join(f"1 sip:127.0.0.1:{b.port};transport=udp 0 0 duid={b.name}\n" for b in bridges))
    port = sipp.free_udp_port()
    ctl = f"unix:{folder / 'ctl'}"
    log = folder / "kamailio.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            binary, "-DD", "-E", "-f", str(CONFIG), "-w", str(folder), "-Y", str(folder),
            "-L", str(module_dir()),
            "-A", f'DISPATCHER_LIST="{listed}"', "-A", "LISTEN_IP=127.0.0.1", "-A", f"SIP_PORT={port}",
            "-A", f"DS_PING_INTERVAL={PROBE_INTERVAL_S}", "-A", f'CTL_SOCKET="{ctl}"',
            stdout=output, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    proxy = Kamailio(port, ctl, kamcmd, process, log)
    try:
        yield proxy
    finally:
        # -DD: the main process stays in the foreground but forks its workers; they share its
        # new process group, which is ours alone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


def answers(message_log: Path) -> list[str]:
    """The 200 OK answers to INVITEs that SIPp received, as text."""
    text = message_log.read_text(errors="replace") if message_log.exists() else ""
    blocks = re.split(r"\n-{20,}[^\n]*\n", "\n" + text)
    return [
        b
        for b in blocks
        if "message received" in b and "SIP/2.0 200" in b and re.search(r"CSeq:\s*1 INVITE", b)
    ]


def contact_port(answer: str) -> int:
    match = re.search(r"^Contact:\s*<?sip:[^>\s]*@?127\.0\.0\.1:(\d+)", answer, re.MULTILINE | re.IGNORECASE)
    assert match, answer
    return int(match.group(1))


async def place_calls(folder: Path, proxy: Kamailio, calls: int) -> tuple[sipp.SippRun, list[str]]:
    """``calls`` short calls (3 s each, one a second, at most two at once) through Kamailio."""
    message_log = folder / "messages.log"
    xml = sipp.scenario("through_kamailio", sipp.call_through_a_proxy(3000))
    run = await sipp.run_sipp(
        folder, xml, proxy.port, calls=calls, rate=1, limit=2, timeout_s=20 + 6 * calls,
        extra=("-trace_msg", "-message_file", str(message_log)),
    )  # fmt: skip
    return run, answers(message_log)


async def test_calls_through_kamailio_reach_both_bridges_and_survive_one_stopping(tmp_path: Path) -> None:
    bridges = [await start_bridge(tmp_path / name, name) for name in ("bridge-a", "bridge-b")]
    first, second = bridges
    try:
        await asyncio.gather(*(wait_ready(b) for b in bridges))
        async with kamailio(tmp_path / "kamailio", bridges) as proxy:
            both_up = {first.port: "A", second.port: "A"}
            seen = await proxy.wait_for(both_up, 20)
            assert seen.keys() == both_up.keys() and all(f.startswith("A") for f in seen.values()), (
                seen, proxy.log.read_text(errors="replace")[-3000:]
            )  # fmt: skip

            run, answered = await place_calls(tmp_path / "sipp-both", proxy, 4)
            assert run.returncode == 0, run.output + run.errors  # every call answered and hung up
            assert len(answered) == 4
            assert {contact_port(a) for a in answered} == {first.port, second.port}, "round robin over both"
            for answer in answered:
                assert re.search(rf"^Record-Route:.*127\.0\.0\.1:{proxy.port}", answer, re.M | re.I)
                assert "c=IN IP4 127.0.0.1" in answer  # media goes to an address the caller reaches

            await first.stop()
            seen = await proxy.wait_for({first.port: "I", second.port: "A"}, 10 + 4 * PROBE_INTERVAL_S)
            assert seen.get(first.port, "").startswith("I"), seen  # the probes took it out of rotation
            assert seen.get(second.port, "").startswith("A"), seen

            run, answered = await place_calls(tmp_path / "sipp-one", proxy, 4)
            assert run.returncode == 0, run.output + run.errors
            assert len(answered) == 4
            assert {contact_port(a) for a in answered} == {second.port}  # all by the bridge still up
    finally:
        for bridge in bridges:
            await bridge.stop()
