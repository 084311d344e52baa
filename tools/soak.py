"""Soak: many real WebRTC patients against one server, a few at a time, and what it leaves behind.

    python -m tools.soak --sessions 100 --concurrent 3 --json

The server is the product (``web/app.py`` on uvicorn, built by the composition root) on
127.0.0.1; each patient is an aiortc peer connection that behaves as the patient page does: a
data channel for the agent's messages, a microphone track that says one synthesised sentence,
then the patient hangs up. Every fifth patient (the second, the seventh, ...) says a red
flag. Reported (the issue's targets):

- ``crashes``: sessions that failed (an HTTP error, a client error, a session the server did not
  end after the hang-up, an error logged by the server); target 0.
- ``escalations_lost``: sessions whose page was told of an escalation but whose record never
  reached the clinician queue; target 0. ``benign_escalated`` counts false alarms (a patient
  with no red flag escalated). ``red_flags_escalated`` is how many red-flag patients
  were escalated at all (a recogniser miss shows there, not as a loss).
- ``rss_start_mib`` / ``rss_end_mib`` / ``rss_drift_pct``: the process's resident memory after
  a first warm round and after the last session ended (target: drift <= 5 %);
  ``per_session_mib``: the peak with ``concurrent`` sessions live, above the idle start, per session.

The server runs in this process with the allocator settings it has in production
(``MALLOC_ARENA_MAX=2``, as ``scripts/start_server.sh`` and the Dockerfile set it; the command
runs itself again with them if they are missing), and its memory is measured as it keeps it:
the soak gives nothing back to the system on its behalf.

Network: loopback only. aioice is told to offer 127.0.0.1 alone (it would offer the machine's
own addresses), and the loop is bounded: ``sessions`` patients, each with its own deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import gc
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import httpx
import numpy as np
import uvicorn
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from agent.redacted_logs import setup_redacted_logging
from configs.settings import Settings, hub_offline_environment, load_settings
from tools.bench_paths import machine
from tools.webrtc_patient_client import (
    CLIENT_RATE,
    HEARD_RMS,
    PatientPeer,
    free_port,
    loopback_ice,
    loudness,
    patient_speech,
)
from web.app import create_app
from web.product import Product, build_product

BENIGN = "I have a red itchy rash on my left forearm, it started two weeks ago."
RED_FLAG = "My lips and tongue are swelling up and I can't breathe properly."
RED_FLAG_EVERY = 5
FRAME_S = 0.02
SESSION_DEADLINE_S = 60.0  # one patient, offer to hang-up, at most
ENDED_DEADLINE_S = 30.0  # the server ends the session after the hang-up within this
SERVER_ALLOCATOR = {"MALLOC_ARENA_MAX": "2"}  # as scripts/start_server.sh and the Dockerfile set it
log = logging.getLogger("tools.soak")


@dataclass
class PatientOutcome:
    index: int
    red_flag: bool
    session_id: str = ""
    status: int = 0
    told_escalation: bool = False
    queued_escalation: bool = False
    heard_agent: bool = False
    replied: bool = False  # the agent spoke after the patient's sentence
    ended_by_server: bool = False
    error: str = ""


@dataclass
class SoakReport:
    sessions: int
    concurrent: int
    machine: str
    crashes: int = 0
    escalations_lost: int = 0
    red_flag_sessions: int = 0
    red_flags_escalated: int = 0
    benign_escalated: int = 0  # patients with no red flag who were escalated anyway (false alarms)
    agent_heard: int = 0
    agent_replied: int = 0
    server_errors_logged: int = 0
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0
    rss_peak_mib: float = 0.0
    rss_drift_pct: float = 0.0
    per_session_mib: float = 0.0
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)


class SpeechTrack(MediaStreamTrack):
    """A microphone: ``lead_s`` of silence, the sentence, then silence, paced in real time."""

    kind = "audio"

    def __init__(self, samples: np.ndarray, lead_s: float = 1.0) -> None:
        super().__init__()
        lead = np.zeros(int(lead_s * CLIENT_RATE), dtype=np.int16)
        self._samples = np.concatenate([lead, samples])
        self._per_frame = int(CLIENT_RATE * FRAME_S)
        self._sent = 0
        self._started: float | None = None
        self.finished = asyncio.Event()  # the sentence has been said
        self.answered = asyncio.Event()  # the agent replied to it, or escalated

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._started is None:
            self._started = now
        due = self._started + self._sent / CLIENT_RATE
        if due > now:
            await asyncio.sleep(due - now)
        chunk = self._samples[self._sent : self._sent + self._per_frame]
        if chunk.size < self._per_frame:
            self.finished.set()
            chunk = np.concatenate([chunk, np.zeros(self._per_frame - chunk.size, dtype=np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = CLIENT_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, CLIENT_RATE)
        self._sent += self._per_frame
        return frame


def rss_mib() -> float:
    """This process's resident memory, from the kernel."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ErrorCounter(logging.Handler):
    """Counts the server's own error lines (a failed session logs one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("web", "media", "pipeline", "agent", "rag")):
            self.count += 1
            self.names.append(f"{record.name}: {record.getMessage()[:120]}")


@contextlib.asynccontextmanager
async def serving(settings: Settings, product: Product) -> AsyncIterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, product),
            host="127.0.0.1",
            port=settings.port,
            log_config=None,
            access_log=False,
        )
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 300  # the server warms every model first
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.1)  # noqa: ASYNC110 - uvicorn exposes no event for this
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=60)


async def listen(track: MediaStreamTrack, mic: SpeechTrack, outcome: PatientOutcome) -> None:
    """The agent's voice: heard once a frame is louder than a whisper; a reply once after the sentence."""
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            if loudness(frame) > HEARD_RMS:
                outcome.heard_agent = True
                if mic.finished.is_set():
                    outcome.replied = True
                    mic.answered.set()


async def one_patient(
    index: int, speech: np.ndarray, red_flag: bool, client: httpx.AsyncClient, product: Product
) -> PatientOutcome:
    outcome = PatientOutcome(index=index, red_flag=red_flag)
    mic = SpeechTrack(speech)
    answered = mic.answered

    def message(data: dict) -> None:
        if data.get("type") == "escalation":
            outcome.told_escalation = True
            answered.set()

    async def hear(track: MediaStreamTrack) -> None:
        await listen(track, mic, outcome)

    peer = PatientPeer(str(index), mic, on_message=message, on_audio=hear)
    try:
        response = await peer.offer(client)
        outcome.status = response.status_code
        if response.status_code != 200:
            outcome.error = f"offer answered {response.status_code}"
            return outcome
        outcome.session_id = peer.session_id
        await asyncio.wait_for(mic.finished.wait(), timeout=30)
        # The reply (or, for a red flag, the escalation) after the sentence; then the patient hangs up.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), timeout=15)
        await asyncio.sleep(1.0)
    except Exception as exc:  # noqa: BLE001 - a client failure is a soak finding, reported
        outcome.error = f"client: {type(exc).__name__}"
    finally:
        await peer.close()
    outcome.ended_by_server = await ended(product, outcome.session_id)
    queued = product.queue.for_session(outcome.session_id) if outcome.session_id else None
    outcome.queued_escalation = queued is not None
    return outcome


async def ended(product: Product, session_id: str) -> bool:
    """The server let the session go after the hang-up (within ``ENDED_DEADLINE_S``)."""
    if not session_id:
        return True
    deadline = time.monotonic() + ENDED_DEADLINE_S
    while session_id in product.host.live:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def soak(sessions: int, concurrent: int) -> SoakReport:
    hub_offline_environment()
    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    try:
        with loopback_ice():
            report, outcomes = await _soak(sessions, concurrent)
    finally:
        logging.getLogger().removeHandler(errors)
    summarise(report, outcomes, errors)
    return report


async def _soak(sessions: int, concurrent: int) -> tuple[SoakReport, list[PatientOutcome]]:
    report = SoakReport(sessions=sessions, concurrent=concurrent, machine=machine())
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            host="127.0.0.1",
            port=free_port(),
            escalations_dir=str(Path(folder) / "escalations"),
            sessions={"max_concurrent": concurrent, "offers_per_minute": 10_000},
        )
        speech = {False: patient_speech(BENIGN, Path(folder)), True: patient_speech(RED_FLAG, Path(folder))}
        product = build_product(settings, phone=False)
        async with (
            serving(settings, product),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}", timeout=60) as client,
        ):
            semaphore = asyncio.Semaphore(concurrent)
            peak = [0.0]

            async def sample_rss(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_mib())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=0.5)

            async def patient(index: int) -> PatientOutcome:
                async with semaphore:
                    red = index % RED_FLAG_EVERY == 1
                    try:
                        one = one_patient(index, speech[red], red, client, product)
                        return await asyncio.wait_for(one, SESSION_DEADLINE_S + ENDED_DEADLINE_S)
                    except TimeoutError:
                        return PatientOutcome(index=index, red_flag=red, error="patient deadline passed")

            started = time.monotonic()
            warm = min(concurrent, sessions)
            outcomes = list(await asyncio.gather(*(patient(i) for i in range(warm))))
            await settle_memory()
            report.rss_start_mib = rss_mib()
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_rss(stop))
            outcomes += await asyncio.gather(*(patient(i) for i in range(warm, sessions)))
            stop.set()
            await sampler
            await settle_memory()
            report.rss_end_mib = rss_mib()
            report.rss_peak_mib = round(peak[0], 1)
            report.wall_s = round(time.monotonic() - started, 1)
    return report, outcomes


async def settle_memory() -> None:
    """Let ended sessions be let go of (the server collects each one on a later loop turn and
    gives its free heap back, ``pipeline/heap.py``), then collect the patients' own objects."""
    await asyncio.sleep(2.0)
    gc.collect()


def summarise(report: SoakReport, outcomes: list[PatientOutcome], errors: ErrorCounter) -> None:
    for o in outcomes:
        failed = o.error or o.status != 200 or not o.ended_by_server
        if failed:
            report.crashes += 1
            why = o.error or f"status {o.status}"
            report.failures.append(f"#{o.index}: {why}; ended by the server: {o.ended_by_server}")
        if o.told_escalation and not o.queued_escalation:
            report.escalations_lost += 1
            report.failures.append(f"#{o.index}: escalation told but not queued")
        report.red_flag_sessions += o.red_flag
        report.red_flags_escalated += o.red_flag and o.queued_escalation
        report.benign_escalated += not o.red_flag and (o.queued_escalation or o.told_escalation)
        report.agent_heard += o.heard_agent
        report.agent_replied += o.replied
    report.server_errors_logged = errors.count
    report.crashes += errors.count
    report.failures += errors.names[:20]
    report.rss_start_mib = round(report.rss_start_mib, 1)
    report.rss_end_mib = round(report.rss_end_mib, 1)
    start, end, peak = report.rss_start_mib, report.rss_end_mib, report.rss_peak_mib
    if start:
        report.rss_drift_pct = round(100 * (end - start) / start, 2)
        report.per_session_mib = round(max(0.0, peak - start) / report.concurrent, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.concurrent < 1:
        parser.error("--sessions and --concurrent are at least 1")
    if SERVER_ALLOCATOR.items() - os.environ.items():
        # glibc reads its settings at process start: run again as the server runs
        # (scripts/start_server.sh, the Dockerfile), so the memory measured is the server's.
        command = [sys.executable, "-m", "tools.soak", *(sys.argv[1:] if argv is None else argv)]
        os.execve(sys.executable, command, {**os.environ, **SERVER_ALLOCATOR})
    setup_redacted_logging("WARNING", "json")
    report = asyncio.run(soak(args.sessions, args.concurrent))
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        for key, value in asdict(report).items():
            print(f"{key}: {value}")
    ok = report.crashes == 0 and report.escalations_lost == 0 and report.rss_drift_pct <= 5.0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
