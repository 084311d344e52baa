"""Capacity: how many patients one server answers in time, ours against the stock assembly.

    python -m tools.capacity --sessions 1,2,4,6,8 --json
    python -m tools.capacity --sessions 1 --turns 1 --json   # a quick check
    python -m tools.capacity --sessions 1,2,4 --no-baseline --through-haproxy --json

For each level N, N patients at once talk to the product's server over real WebRTC on
loopback, as the patient page does: Opus audio and VP8 camera video (640x480, ``--camera-fps``:
by default the 2 fps the page sends while no clinician watches),
each saying a scripted conversation in real time (``--turns`` patient turns of 1-15 s, most 3-8 s,
as in an intake), waiting for the agent's reply (and its end) between turns. The server runs
as its own process (``tools/loopback_server.py``, a fresh one per level, admitting N sessions),
so its CPU and memory are its own. Then the same levels against the same server assembling
each session from stock pipecat services (``--baseline`` of the launcher: each session loads
its own models, as pipecat does by default).

Per level: voice-to-voice latency at the client (the end of the patient's speech to the first
loud frame of the agent's audio received), p50 and p95 over every turn of every patient; turns
lost (no reply within 10 s, or never said because the patient failed or the level's deadline
passed); the server process's CPU over the level's wall time (100 = one core busy) and its peak
resident memory. The load generator's own CPU is reported on stderr, apart.

The generator costs little: patient speech and camera video are encoded once, at start, with
PyAV (Opus 20 ms packets, VP8 frames), and every patient replays the packets (aiortc sends a
track's ``av.Packet`` as it is, as ``MediaPlayer(..., decode=False)`` does); only the agent's
audio is decoded, to hear when it speaks.

Output: human lines on stderr; with ``--json`` one JSON object, last line on stdout:
``{"machine", "capacity", "baseline_capacity", "levels": [{"sessions", "p50_ms", "p95_ms",
"turns", "turns_lost", "cpu_pct", "rss_mb"}], "baseline_levels": [...]}``, where capacity is the
largest N whose p95 is <= 1200 ms with no turn lost (``capacity``).

``--through-haproxy``: each level is also run through Debian's HAProxy with the deployment's
config (``configs/haproxy/haproxy.cfg``, addresses rewritten: ``tools/haproxy_loopback.py``) in
front of two replicas of the server on this box, each admitting N sessions and answering the
agent check. The JSON then has ``"haproxy": {"capacity", "levels": [...], "added": [{"sessions",
"request_p50_ms", "request_p95_ms", "request_p95_added_ms", "offer_p95_ms",
"offer_p95_added_ms", "voice_p95_added_ms"}]}``. What HAProxy adds is measured where it is:
``request_*``: ``GET /health`` to one replica, alternately direct and through HAProxy
(``REQUESTS`` each, before the patients start), ``request_p95_added_ms`` the difference of the
p95s (the issue's target: <= 20 ms); ``offer_*``: the patients' ``POST /api/offer`` round trip
through HAProxy, against the direct level's. The voice itself does not pass through HAProxy
(WebRTC media go from the patient to the replica), so ``voice_p95_added_ms`` (the level's
voice-to-voice p95 through HAProxy minus direct) measures two replicas sharing this box's cores,
not the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import httpx
import numpy as np
import psutil
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from agent.redacted_logs import setup_redacted_logging
from configs.settings import hub_offline_environment
from pipeline.camera import FRAMES_NEEDED_FPS
from tools.bench_paths import PATIENT_LINES, machine
from tools.haproxy_loopback import HAProxy, Replica
from tools.webrtc_patient_client import (
    CLIENT_RATE,
    HEARD_RMS,
    PatientPeer,
    free_port,
    loopback_ice,
    loudness,
    patient_speech,
)

P95_LIMIT_MS = 1200.0  # the bar for a level the box can carry
FRAME_S = 0.02  # one Opus packet
REPLY_WAIT_S = 10.0  # no loud agent audio this long after the patient's speech: the turn is lost
QUIET_S = 1.0  # the agent has finished speaking once it has been quiet this long
SPEAKING_LIMIT_S = 45.0  # at most this long waiting for the agent to finish (the greeting, a reply)
GREETING_WAIT_S = 20.0  # the agent greets first; without a greeting the patient starts anyway
THINK_S = 0.4  # the patient's pause before answering the agent
SERVER_START_S = 300.0  # the server warms every model before it listens
CAMERA_LOOP_S = 2.0  # the camera's video, encoded once, loops (one key frame per loop)
CAMERA_SIZE = (640, 480)  # what the patient page asks the camera for (web/static/app.js)
REQUESTS = 200  # GET /health per way (direct, through HAProxy): what HAProxy adds to a request
# A turn's length class, in an intake's proportions: mostly 3-8 s, some short, some long.
SCRIPT = ("medium", "short", "medium", "long", "medium")


@dataclass
class Level:
    sessions: int
    p50_ms: float
    p95_ms: float
    turns: int
    turns_lost: int
    cpu_pct: float
    rss_mb: float


@dataclass
class LevelDetails:
    """What the JSON leaves out and the human lines say."""

    generator_cpu_pct: float = 0.0
    idle_rss_mb: float = 0.0
    overlaps: int = 0  # turns the agent started speaking while the patient still spoke
    errors: list[str] = field(default_factory=list)
    offers_ms: list[float] = field(default_factory=list)  # each patient's POST /api/offer round trip
    requests_ms: dict[str, list[float]] = field(default_factory=dict)  # "direct"/"haproxy": GET /health


def capacity(levels: Sequence[Level], p95_limit_ms: float = P95_LIMIT_MS) -> int:
    """The largest number of sessions whose p95 is within the limit with no turn lost (0: none)."""
    passing = [
        level.sessions
        for level in levels
        if level.turns > 0 and level.turns_lost == 0 and level.p95_ms <= p95_limit_ms
    ]
    return max(passing, default=0)


def summarise(sessions: int, turns: int, latencies_ms: list[float], cpu_pct: float, rss_mb: float) -> Level:
    """One level's figures; every scripted turn without a measured reply is lost."""
    return Level(
        sessions=sessions,
        p50_ms=round(statistics.median(latencies_ms), 1) if latencies_ms else 0.0,
        p95_ms=round(float(np.percentile(latencies_ms, 95)), 1) if latencies_ms else 0.0,
        turns=turns,
        turns_lost=turns - len(latencies_ms),
        cpu_pct=round(cpu_pct, 1),
        rss_mb=round(rss_mb, 1),
    )


# -- the patients' media, encoded once ---------------------------------------------------------


@dataclass(frozen=True)
class Media:
    turns: dict[str, list[bytes]]  # a turn's text -> its Opus packets
    silence: bytes  # one Opus packet of silence, sent between turns
    camera: list[bytes]  # one loop of VP8 frames, the first a key frame
    camera_fps: int


def encode_opus(samples: np.ndarray) -> list[bytes]:
    """16-bit mono samples at 48 kHz as 20 ms Opus packets (the browser's codec and framing)."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = CLIENT_RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = 32000
    per = int(CLIENT_RATE * FRAME_S)
    padded = np.concatenate([samples, np.zeros(-samples.size % per, dtype=np.int16)])
    packets: list[bytes] = []
    for start in range(0, padded.size, per):
        frame = av.AudioFrame.from_ndarray(
            padded[start : start + per].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = CLIENT_RATE
        frame.pts = start
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    return packets


def encode_camera(fps: int, seconds: float = CAMERA_LOOP_S) -> list[bytes]:
    """A skin-coloured view with a moving patch and sensor noise, as VP8 frames (key frame first)."""
    width, height = CAMERA_SIZE
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, fps)
    encoder.framerate = fractions.Fraction(fps)
    encoder.bit_rate = 600_000
    count = max(1, round(seconds * fps))
    encoder.gop_size = count  # one key frame per loop: its first
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(12)
    ys, xs = np.mgrid[0:height, 0:width]
    packets: list[bytes] = []
    for index in range(count):
        image = np.empty((height, width, 3), dtype=np.float32)
        image[:] = (224, 172, 150)
        cx = width / 2 + 80 * math.sin(2 * math.pi * index / count)
        patch = (xs - cx) ** 2 + (ys - height / 2) ** 2 < 60**2
        image[patch] = (190, 90, 90)
        image += rng.normal(0, 6, image.shape)
        frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = index
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    return packets


def turn_texts() -> dict[str, list[str]]:
    """The patient's turns by length class, from the benchmarks' lines (the closing one left out)."""
    lines = PATIENT_LINES[:-1]
    return {
        "short": [line for line in lines if len(line) <= 30],
        "medium": [" ".join(lines[i : i + 2]) for i in range(0, len(lines) - 1, 2)],
        "long": [" ".join(lines[i : i + 5]) for i in range(0, len(lines) - 4, 5)],
    }


def script(patient: int, turns: int) -> list[str]:
    """Patient ``patient``'s turns: ``SCRIPT`` rotated per patient, so a level mixes lengths."""
    texts = turn_texts()
    chosen = []
    for turn in range(turns):
        kind = SCRIPT[(patient + turn) % len(SCRIPT)]
        pool = texts[kind]
        chosen.append(pool[(patient * len(SCRIPT) + turn) % len(pool)])
    return chosen


def prepare_media(scripts: list[list[str]], camera_fps: int, folder: Path) -> Media:
    """Synthesise every turn said (Piper) and encode it and the camera, once."""
    turns = {}
    for text in {text for said in scripts for text in said}:
        turns[text] = encode_opus(patient_speech(text, folder))
    silence = encode_opus(np.zeros(int(CLIENT_RATE * 0.2), dtype=np.int16))[-1]
    return Media(turns=turns, silence=silence, camera=encode_camera(camera_fps), camera_fps=camera_fps)


# -- one patient ---------------------------------------------------------------------------------


class PacketTrack(MediaStreamTrack):
    """Sends pre-encoded packets in real time (aiortc packs them without encoding)."""

    def __init__(self, period_s: float, time_base: fractions.Fraction, ticks: int) -> None:
        super().__init__()
        self._period_s = period_s
        self._time_base = time_base
        self._ticks = ticks  # pts per packet
        self._sent = 0
        self._started: float | None = None

    @abstractmethod
    def next_payload(self, due: float) -> bytes:
        """The next packet's payload, due at ``due`` (monotonic seconds)."""

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._started is None:
            self._started = now
        due = self._started + self._sent * self._period_s
        if due > now:
            await asyncio.sleep(due - now)
        packet = av.Packet(self.next_payload(due))
        packet.pts = self._sent * self._ticks
        packet.time_base = self._time_base
        self._sent += 1
        return packet


class ScriptedMicrophone(PacketTrack):
    """Silence, or the turn it was told to say; knows when the turn's speech ended."""

    kind = "audio"

    def __init__(self, silence: bytes) -> None:
        super().__init__(FRAME_S, fractions.Fraction(1, CLIENT_RATE), int(CLIENT_RATE * FRAME_S))
        self._silence = silence
        self._queue: list[bytes] = []
        self.turn = -1
        self.ended_at: float | None = None  # when the current turn's last packet has played
        self.done = asyncio.Event()

    def say(self, turn: int, packets: list[bytes]) -> None:
        self.turn, self.ended_at = turn, None
        self._queue = list(reversed(packets))
        self.done.clear()

    @property
    def speaking(self) -> bool:
        return bool(self._queue)

    def next_payload(self, due: float) -> bytes:
        if not self._queue:
            if self.turn >= 0 and self.ended_at is not None:
                self.done.set()
            return self._silence
        payload = self._queue.pop()
        if not self._queue:
            self.ended_at = due + FRAME_S
        return payload


class LoopingCamera(PacketTrack):
    kind = "video"

    def __init__(self, frames: list[bytes], fps: int) -> None:
        super().__init__(1.0 / fps, fractions.Fraction(1, 90000), 90000 // fps)
        self._frames = frames

    def next_payload(self, due: float) -> bytes:
        return self._frames[self._sent % len(self._frames)]


class AgentEar:
    """Listens to the agent's audio: when it was last loud, and its first loud frame per turn."""

    def __init__(self, microphone: ScriptedMicrophone) -> None:
        self._mic = microphone
        self.last_loud = -math.inf
        self.heard = asyncio.Event()
        self.replied = asyncio.Event()
        self.replies: dict[int, float] = {}
        self.overlaps: set[int] = set()

    async def listen(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if loudness(frame) <= HEARD_RMS:
                    continue
                now = time.monotonic()
                self.last_loud = now
                self.heard.set()
                mic, turn = self._mic, self._mic.turn
                if mic.ended_at is not None and now >= mic.ended_at and turn not in self.replies:
                    self.replies[turn] = now
                    self.replied.set()
                elif mic.speaking:
                    self.overlaps.add(turn)

    async def quiet(self) -> None:
        """Until the agent has been quiet ``QUIET_S`` (at most ``SPEAKING_LIMIT_S``)."""
        deadline = time.monotonic() + SPEAKING_LIMIT_S
        # Quiet is the absence of loud frames: nothing to wait on but the clock.
        while time.monotonic() - self.last_loud < QUIET_S and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


@dataclass
class PatientRun:
    latencies_ms: list[float] = field(default_factory=list)
    overlaps: int = 0
    error: str = ""
    offer_ms: float | None = None


async def converse(
    index: int, said: list[str], media: Media, client: httpx.AsyncClient, run: PatientRun
) -> None:
    """One patient: connect, hear the greeting out, say each turn and wait for the reply, hang up."""
    mic = ScriptedMicrophone(media.silence)
    ear = AgentEar(mic)
    peer = PatientPeer(
        f"capacity-{index}", mic, LoopingCamera(media.camera, media.camera_fps), on_audio=ear.listen
    )
    try:
        sent = time.monotonic()
        response = await peer.offer(client)
        run.offer_ms = round(1000 * (time.monotonic() - sent), 1)
        if response.status_code != 200:
            run.error = f"offer answered {response.status_code}"
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ear.heard.wait(), GREETING_WAIT_S)
        await ear.quiet()
        for turn, text in enumerate(said):
            packets = media.turns[text]
            ear.replied.clear()
            mic.say(turn, packets)
            await asyncio.wait_for(mic.done.wait(), len(packets) * FRAME_S + 15.0)
            ended = mic.ended_at or time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ear.replied.wait(), max(0.0, ended + REPLY_WAIT_S - time.monotonic()))
            reply = ear.replies.get(turn)
            if reply is not None and reply - ended <= REPLY_WAIT_S:
                run.latencies_ms.append(round(1000 * (reply - ended), 1))
                await ear.quiet()
            await asyncio.sleep(THINK_S)
    except Exception as exc:  # noqa: BLE001 - a client failure is a finding of the level, reported
        run.error = f"client: {type(exc).__name__}"
    finally:
        run.overlaps = len(ear.overlaps)
        await peer.close()


# -- one level -----------------------------------------------------------------------------------


def server_env(sessions: int, port: int, folder: Path, agent_port: int = 0) -> dict[str, str]:
    """``python -m web``'s settings for a level: loopback, N lines, offers unthrottled, files in
    ``folder``; with ``agent_port``, the capacity agent HAProxy asks."""
    return {
        **os.environ,
        "APP_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SESSIONS__MAX_CONCURRENT": str(sessions),
        "SESSIONS__OFFERS_PER_MINUTE": "100000",
        "ESCALATIONS_DIR": str(folder / "escalations"),
        "VECTOR_STORE_DIR": str(folder / "chroma"),
        "CLINICIAN__ACCOUNTS_FILE": str(folder / "clinicians.json"),
        "CLINICIAN__AUDIT_LOG": str(folder / "audit.log"),
        "SESSIONS__AGENT_CHECK_PORT": str(agent_port),
    }


async def wait_until_up(client: httpx.AsyncClient, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/health", timeout=2)).status_code == 200:
                return
        await asyncio.sleep(0.5)
    raise RuntimeError("the server did not come up")


def cpu_seconds(process: psutil.Process, *, children: bool) -> float:
    """CPU time of ``process`` (and, with ``children``, of its children still running)."""
    processes = [process, *(process.children(recursive=True) if children else [])]
    total = 0.0
    for p in processes:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system  # its own threads; not the children it reaped
    return total


def rss_mb(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        return process.memory_info().rss / 2**20
    return 0.0


async def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.to_thread(process.wait), 30)
    except TimeoutError:
        process.kill()
        await asyncio.to_thread(process.wait)


def p95(values: Sequence[float]) -> float:
    return round(float(np.percentile(values, 95)), 1) if values else 0.0


async def request_latencies(
    direct_port: int, haproxy_port: int, count: int = REQUESTS
) -> dict[str, list[float]]:
    """``GET /health`` ``count`` times each way, alternately: one replica direct, and through HAProxy."""
    times: dict[str, list[float]] = {"direct": [], "haproxy": []}
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(count):
            for way, port in (("direct", direct_port), ("haproxy", haproxy_port)):
                sent = time.perf_counter()
                (await client.get(f"http://127.0.0.1:{port}/health")).raise_for_status()
                times[way].append(1000 * (time.perf_counter() - sent))
    return times


def haproxy_binary() -> str:
    path = shutil.which("haproxy")
    if path is None:
        raise SystemExit("--through-haproxy needs Debian's haproxy (apt-get install haproxy)")
    return path


async def run_level(
    sessions: int, scripts: list[list[str]], media: Media, *, baseline: bool, through_haproxy: bool = False
) -> tuple[Level, LevelDetails]:
    """N patients at once against a fresh server (or, ``through_haproxy``, two fresh replicas behind
    HAProxy, each admitting N); bounded by the level's deadline."""
    details = LevelDetails()
    turns = sum(len(s) for s in scripts[:sessions])
    deadline_s = 90.0 + 60.0 * max(len(s) for s in scripts)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        count = 2 if through_haproxy else 1
        replicas = [
            Replica(f"app-{i + 1}", free_port(), free_port() if through_haproxy else 0) for i in range(count)
        ]
        command = [sys.executable, "-m", "tools.loopback_server", *(["--baseline"] if baseline else [])]
        processes, logs = [], []
        for replica in replicas:
            home = folder / replica.name
            home.mkdir()
            logs.append(home / "server.log")
            with logs[-1].open("wb") as server_log:
                processes.append(
                    subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
                        command,
                        env=server_env(sessions, replica.port, home, replica.agent_port),
                        stdout=subprocess.DEVNULL,
                        stderr=server_log,
                    )
                )
        haproxy = (
            HAProxy(haproxy_binary(), folder, free_port(), replicas, free_port()) if through_haproxy else None
        )
        runs = [PatientRun() for _ in range(sessions)]
        peak, cpu_pct = [0.0], 0.0
        try:
            for replica, process in zip(replicas, processes, strict=True):
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{replica.port}", timeout=30
                ) as direct:
                    await wait_until_up(direct, process)
            port = replicas[0].port
            if haproxy is not None:
                haproxy.start()
                await haproxy.wait_for({replica.name: "UP" for replica in replicas})
                details.requests_ms = await request_latencies(replicas[0].port, haproxy.port)
                port = haproxy.port
            servers, generator = [psutil.Process(p.pid) for p in processes], psutil.Process()
            details.idle_rss_mb = round(sum(rss_mb(server) for server in servers), 1)
            stop = asyncio.Event()

            async def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], sum(rss_mb(server) for server in servers))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)

            def servers_cpu() -> float:
                return sum(cpu_seconds(server, children=True) for server in servers)

            sampler = asyncio.create_task(sample())
            started, server_cpu, generator_cpu = (
                time.monotonic(),
                servers_cpu(),
                cpu_seconds(generator, children=False),
            )
            # Each patient its own browser: no cookie of one patient steers another's offer.
            clients = [
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) for _ in range(sessions)
            ]
            try:
                patients = [
                    asyncio.create_task(converse(i, scripts[i], media, clients[i], runs[i]))
                    for i in range(sessions)
                ]
                _done, late = await asyncio.wait(patients, timeout=deadline_s)
                for task in late:
                    task.cancel()
                if late:
                    details.errors.append(
                        f"{len(late)} patients past the level's deadline ({deadline_s:.0f} s)"
                    )
                    await asyncio.wait(late, timeout=10)
            finally:
                for client in clients:
                    await client.aclose()
            wall = time.monotonic() - started
            cpu_pct = 100 * (servers_cpu() - server_cpu) / wall
            details.generator_cpu_pct = round(
                100 * (cpu_seconds(generator, children=False) - generator_cpu) / wall, 1
            )
            stop.set()
            await sampler
        except (RuntimeError, TimeoutError) as exc:
            tails = " | ".join(log.read_text(errors="replace")[-800:] for log in logs)
            details.errors.append(f"server: {exc}; log tail: {tails}")
        finally:
            if haproxy is not None:
                haproxy.stop()
            for process in processes:
                await stop_server(process)
    details.errors += [f"patient {i}: {run.error}" for i, run in enumerate(runs) if run.error]
    details.overlaps = sum(run.overlaps for run in runs)
    details.offers_ms = [run.offer_ms for run in runs if run.offer_ms is not None]
    latencies = [ms for run in runs for ms in run.latencies_ms]
    return summarise(sessions, turns, latencies, cpu_pct, peak[0]), details


def say(assembly: str, level: Level, details: LevelDetails) -> None:
    print(
        f"{assembly:8s} N={level.sessions}: p50={level.p50_ms} ms p95={level.p95_ms} ms "
        f"turns={level.turns} lost={level.turns_lost} server cpu={level.cpu_pct}% "
        f"rss={level.rss_mb} MB (idle {details.idle_rss_mb} MB) generator cpu={details.generator_cpu_pct}% "
        f"agent spoke over the patient in {details.overlaps} turns",
        file=sys.stderr,
        flush=True,
    )
    for error in details.errors:
        print(f"         {error}", file=sys.stderr, flush=True)


def haproxy_added(direct: tuple[Level, LevelDetails], through: tuple[Level, LevelDetails]) -> dict:
    """What HAProxy in front of two replicas added at one level (see the module's docstring)."""
    (direct_level, direct_details), (level, details) = direct, through
    requests = details.requests_ms
    offer = p95(details.offers_ms)
    return {
        "sessions": level.sessions,
        "request_p50_ms": round(statistics.median(requests["haproxy"]), 1) if requests else 0.0,
        "request_p95_ms": p95(requests.get("haproxy", [])),
        "request_p95_added_ms": round(p95(requests.get("haproxy", [])) - p95(requests.get("direct", [])), 1),
        "offer_p95_ms": offer,
        "offer_p95_added_ms": round(offer - p95(direct_details.offers_ms), 1),
        "voice_p95_added_ms": round(level.p95_ms - direct_level.p95_ms, 1),
    }


async def measure(
    levels: list[int], turns: int, camera_fps: int, with_baseline: bool, through_haproxy: bool = False
) -> dict:
    scripts = [script(i, turns) for i in range(max(levels))]
    with tempfile.TemporaryDirectory() as folder:
        media = prepare_media(scripts, camera_fps, Path(folder))
    seconds = sorted(len(packets) * FRAME_S for packets in media.turns.values())
    print(
        f"patient turns: {len(seconds)} distinct, {seconds[0]:.1f}-{seconds[-1]:.1f} s "
        f"(median {statistics.median(seconds):.1f} s); "
        f"camera {CAMERA_SIZE[0]}x{CAMERA_SIZE[1]} at {camera_fps} fps",
        file=sys.stderr,
        flush=True,
    )
    report: dict = {"machine": machine()}
    direct: list[tuple[Level, LevelDetails]] = []
    for assembly in ("ours", "baseline") if with_baseline else ("ours",):
        results = []
        for n in levels:
            level, details = await run_level(n, scripts, media, baseline=assembly == "baseline")
            say(assembly, level, details)
            results.append(level)
            if assembly == "ours":
                direct.append((level, details))
        key = "levels" if assembly == "ours" else "baseline_levels"
        report[key] = [asdict(level) for level in results]
        report["capacity" if assembly == "ours" else "baseline_capacity"] = capacity(results)
    report.setdefault("baseline_levels", [])
    report.setdefault("baseline_capacity", 0)
    order = ("machine", "capacity", "baseline_capacity", "levels", "baseline_levels")
    if through_haproxy:
        through = []
        for n, alone in zip(levels, direct, strict=True):
            level, details = await run_level(n, scripts, media, baseline=False, through_haproxy=True)
            say("haproxy", level, details)
            added = haproxy_added(alone, (level, details))
            print(
                f"         HAProxy added p95: request {added['request_p95_added_ms']} ms "
                f"(p95 {added['request_p95_ms']} ms), offer {added['offer_p95_added_ms']} ms, "
                f"voice {added['voice_p95_added_ms']} ms",
                file=sys.stderr,
                flush=True,
            )
            through.append((level, added))
        report["haproxy"] = {
            "capacity": capacity([level for level, _ in through]),
            "levels": [asdict(level) for level, _ in through],
            "added": [added for _, added in through],
        }
        order = (*order, "haproxy")
    return {key: report[key] for key in order}


def parse_levels(text: str) -> list[int]:
    levels = sorted({int(part) for part in text.split(",") if part.strip()})
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("sessions are whole numbers of at least 1, e.g. 1,2,4")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.capacity", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions", type=parse_levels, default=[1, 2, 4, 6, 8], help="levels, e.g. 1,2,4,6,8"
    )
    parser.add_argument(
        "--turns", type=int, default=4, choices=range(1, len(SCRIPT) + 1), help="turns per patient"
    )
    parser.add_argument(
        "--camera-fps",
        type=int,
        default=FRAMES_NEEDED_FPS,
        help="the camera's frame rate: the patient page's while no clinician watches (30 when one does)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="measure ours only")
    parser.add_argument(
        "--through-haproxy",
        action="store_true",
        help="also run each level through HAProxy (configs/haproxy/haproxy.cfg) in front of two replicas",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object, last line")
    args = parser.parse_args(argv)
    hub_offline_environment()
    setup_redacted_logging("WARNING", "text")
    with loopback_ice():
        report = asyncio.run(
            measure(args.sessions, args.turns, args.camera_fps, not args.no_baseline, args.through_haproxy)
        )
    print(
        f"capacity: {report['capacity']} sessions (baseline {report['baseline_capacity']}) "
        f"on {report['machine']}",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
