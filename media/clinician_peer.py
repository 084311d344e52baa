"""The clinician's WebRTC connection to a room (aiortc): what they hear and see, what they send.

The clinician hears the patient and the agent (one mixed track) and sees the patient's camera;
the room receives the clinician's microphone (for the patient to hear) and camera (for the
patient to see).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from media.room_audio import AudioRing, RingMixTrack
from media.video_tracks import LatestFrameTrack

log = logging.getLogger(__name__)
CLINICIAN_RATE = 48000


class ClinicianPeer:
    def __init__(
        self,
        *,
        hears: list[AudioRing],
        sees: LatestFrameTrack,
        on_audio: Callable[[np.ndarray, int], None],
        on_video: Callable[[MediaStreamTrack], None],
        ice_servers: list[RTCIceServer] | None = None,
    ) -> None:
        # The session's ICE servers (TURN, docs/rooms.md), none when not configured: aiortc's own
        # default would be a public STUN server, and nothing may be sent off the box unasked.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers or []))
        self._out_audio = RingMixTrack(hears, CLINICIAN_RATE)
        self._out_video = sees
        self._on_audio = on_audio
        self._on_video = on_video
        self._relay = MediaRelay()
        self._readers: list[asyncio.Task] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._readers.append(asyncio.create_task(self._read_audio(track), name="clinician-audio"))
        elif track.kind == "video":
            self._on_video(self._relay.subscribe(track))

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().reshape(-1)
            channels = frame.layout.nb_channels
            if channels > 1:
                samples = samples.reshape(-1, channels)[:, 0]
            self._on_audio(samples.astype(np.int16), frame.sample_rate)

    async def answer(self, sdp: str, sdp_type: str) -> dict[str, str]:
        """Answer the clinician's offer; ICE candidates are gathered before returning (no trickle)."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=sdp_type))
        for transceiver in self.pc.getTransceivers():
            track = self._out_audio if transceiver.kind == "audio" else self._out_video
            transceiver.sender.replaceTrack(track)
            transceiver.direction = "sendrecv"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return {"sdp": self.pc.localDescription.sdp, "type": self.pc.localDescription.type}

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await self.pc.close()
