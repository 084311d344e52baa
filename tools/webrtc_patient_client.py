"""A patient's browser, as the benchmarks drive it: an aiortc peer connection on loopback.

The soak (``tools/soak.py``) and the capacity benchmark (``tools/capacity.py``) both open patient
sessions the way the patient page does (``web/static/app.js``): a data channel for the agent's
messages (``client-ready`` once it opens), an audio transceiver for the microphone and a video
transceiver for the camera, the offer POSTed to ``/api/offer``. What differs between them is
what the microphone says and what they listen for; that is theirs.

Loopback: aioice offers the machine's own addresses and skips 127.0.0.1, so a server on
127.0.0.1 is unreachable unless aioice is told to offer 127.0.0.1 alone, in every process that
holds a peer connection (``loopback_ice``; ``tools/loopback_server.py`` does it for the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aioice.ice
import av
import httpx
import numpy as np
import soundfile as sf
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media.resample import resample
from media.synth import synthesize

CLIENT_RATE = 48000  # what a browser's microphone track carries
HEARD_RMS = 300.0  # agent audio louder than this (int16) is the agent speaking


@contextlib.contextmanager
def loopback_ice() -> Iterator[None]:
    """aioice offers 127.0.0.1 alone while inside (it skips loopback otherwise)."""
    addresses = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = addresses


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def patient_speech(text: str, folder: Path) -> np.ndarray:
    """``text`` said by the offline Piper voice, as 16-bit mono samples at the browser's rate."""
    samples, rate = sf.read(synthesize(text, folder / f"{abs(hash(text))}.wav"), dtype="int16")
    return resample(samples, rate, CLIENT_RATE)


def loudness(frame: av.AudioFrame) -> float:
    """RMS of one received audio frame (int16 scale): above ``HEARD_RMS`` the agent is speaking."""
    return float(np.sqrt(np.mean(frame.to_ndarray().astype(np.float64) ** 2)))


class PatientPeer:
    """One patient's peer connection, opened as the patient page opens it.

    ``on_message``: each data-channel message from the agent, parsed (``data`` of the RTVI
    envelope). ``on_audio``: a coroutine started on the agent's audio track once it arrives;
    it is cancelled at ``close``.
    """

    def __init__(
        self,
        name: str,
        microphone: MediaStreamTrack,
        camera: MediaStreamTrack | None = None,
        *,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        on_audio: Callable[[MediaStreamTrack], Awaitable[None]] | None = None,
    ) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.session_id = ""
        self.room_token = ""
        self._listeners: list[asyncio.Task] = []
        channel = self.pc.createDataChannel("messages", ordered=True)

        @channel.on("open")
        def _ready() -> None:
            channel.send(json.dumps({"label": "rtvi-ai", "type": "client-ready", "id": name, "data": {}}))

        @channel.on("message")
        def _message(message: str) -> None:
            if on_message is None:
                return
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                data = json.loads(message).get("data") or {}
                if isinstance(data, dict):
                    on_message(data)

        @self.pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and on_audio is not None:
                self._listeners.append(asyncio.create_task(on_audio(track)))

        self.pc.addTransceiver(microphone, direction="sendrecv")
        self.pc.addTransceiver(camera if camera is not None else "video", direction="sendrecv")

    async def offer(
        self, client: httpx.AsyncClient, *, resume: tuple[str, str] | None = None
    ) -> httpx.Response:
        """POST the offer; on 200 the answer is applied and ``session_id`` is the server's.

        ``resume``: (session id, room token) of a session this patient was cut off from, as the
        page sends them when it reconnects.
        """
        await self.pc.setLocalDescription(await self.pc.createOffer())  # gathers every candidate
        description = self.pc.localDescription
        body: dict[str, Any] = {"sdp": description.sdp, "type": description.type}
        headers = {}
        if resume is not None:
            body["resume"], headers["X-Room-Token"] = resume
        response = await client.post("/api/offer", json=body, headers=headers)
        if response.status_code == 200:
            answer = response.json()
            self.session_id = answer["session_id"]
            self.room_token = answer.get("room_token", "")
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        return response

    async def close(self) -> None:
        """Hang up: the connection closes, the listeners stop."""
        await self.pc.close()
        for task in self._listeners:
            task.cancel()
