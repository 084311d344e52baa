"""A clinician joins a phone caller's room: the caller hears the clinician, the clinician the caller.

The real bridge and the real session (the mock brain, Whisper, Piper) behind a real room; the
caller is the test's SIP user agent, the clinician an aiortc peer like a browser's, both on
127.0.0.1. Each sends a tone; each must find the other's tone in what it receives.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from pathlib import Path

import aioice.ice
import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from media.host import SessionHost
from media.rooms import Rooms
from media.sip.server import SipServer
from media.sip.uac import Caller
from pipeline.session import warm_up
from tests.media.sip.conftest import sip_settings, wait_for

pytestmark = pytest.mark.slow


class ToneTrack(MediaStreamTrack):
    """A microphone that plays a steady tone (48 kHz, 20 ms frames, paced in real time)."""

    kind = "audio"

    def __init__(self, hz: float) -> None:
        super().__init__()
        self._hz, self._sent, self._start = hz, 0, time.monotonic()

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(max(0.0, self._start + self._sent / 48000 - time.monotonic()))
        t = (self._sent + np.arange(960)) / 48000
        samples = (6000 * np.sin(2 * np.pi * self._hz * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._sent, fractions.Fraction(1, 48000)
        self._sent += 960
        return frame


def tone_share(samples: np.ndarray, rate: int, hz: float) -> float:
    """How much of the signal's energy lies within 50 Hz of ``hz``."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size))) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    return float(spectrum[np.abs(freqs - hz) < 50].sum() / max(spectrum.sum(), 1e-9))


async def test_a_clinician_and_a_phone_caller_hear_each_other(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    settings = sip_settings(tmp_path)
    warm_up(settings)
    rooms = Rooms()
    server = SipServer(settings, SessionHost(settings, rooms=rooms))
    await server.start()
    caller = Caller(("127.0.0.1", server.port))
    await caller.open()
    clinician = RTCPeerConnection()
    heard_by_clinician: list[np.ndarray] = []

    async def listen(track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().reshape(-1)
            heard_by_clinician.append(samples.reshape(-1, frame.layout.nb_channels)[:, 0])

    listeners: list[asyncio.Task] = []
    clinician.on("track", lambda track: listeners.append(asyncio.create_task(listen(track))))
    try:
        await caller.invite()
        session_id = next(iter(server.calls.values())).tag
        assert await wait_for(lambda: rooms.is_live(session_id), within=10)

        clinician.addTrack(ToneTrack(1000))
        await clinician.setLocalDescription(await clinician.createOffer())
        answer = await rooms.join(session_id, "Dr. Okafor", clinician.localDescription.sdp, "offer")
        await clinician.setRemoteDescription(RTCSessionDescription(**answer))
        assert await wait_for(lambda: clinician.connectionState == "connected", within=15)

        joined = time.monotonic()
        clip = caller.play(
            (4000 * np.sin(2 * np.pi * 300 * np.arange(8000 * 4) / 8000)).astype(np.int16)
        )  # 4 s of 300 Hz from the caller: no speech, so the agent never takes a turn
        await asyncio.wait_for(clip.done.wait(), 10)

        caller_heard = caller.audio(since=joined + 1.0)
        assert caller_heard.size > 8000
        assert tone_share(caller_heard, 8000, 1000) > 0.2, "the caller hears the clinician"
        clinician_heard = np.concatenate(heard_by_clinician[-150:])  # the last 3 s
        assert tone_share(clinician_heard, 48000, 300) > 0.2, "the clinician hears the caller"
    finally:
        for task in listeners:
            task.cancel()
        await clinician.close()
        await caller.bye()
        await caller.close()
        await server.stop()
    assert not rooms.is_live(session_id)  # the room went with the call
