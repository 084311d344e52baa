"""The patient's side of a room when the patient is in a browser (pipecat's SmallWebRTC).

The patient's camera is decoded at the camera sampler's need (``FRAMES_NEEDED_FPS``) while only
the agent looks at it, and at ``WATCHED_FPS`` while a clinician in the room watches it (the
clinician sees the frames the transport passes on). The page is asked for the same (an RTVI
server message, ``web/static/app.js``), so the server has no more frames to decode than that.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiortc import MediaStreamTrack
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

from media.room import Room
from media.room_audio import OverlayTrack
from pipeline.camera import FRAMES_NEEDED_FPS

log = logging.getLogger(__name__)
# What a clinician watching the patient sees: the room forwards the frames the transport passes
# on (``media/room_observer.py``) in a 10 fps track (``media/video_tracks.py``).
WATCHED_FPS = 8
CAMERA_SOURCE = "camera"


class CameraInput(Protocol):
    """The part of a transport that sets how many camera frames a second it passes on."""

    async def capture_participant_video(self, participant_id: str, framerate: int, video_source: str) -> None:
        """Pass on ``framerate`` frames a second of the participant's ``video_source``."""


class BrowserPatient:
    """Adds the clinician's voice to the agent's audio track and shows the clinician's camera.

    It also keeps the patient's camera at the rate someone needs: the sampler's while the agent
    alone looks, the clinician's view while a clinician is in the room.
    """

    def __init__(self, connection: SmallWebRTCConnection, camera: CameraInput | None = None) -> None:
        self._connection = connection
        self._room: Room | None = None
        self._camera = camera
        self._watched = False

    @property
    def camera_fps(self) -> int:
        """Camera frames a second the transport passes on now."""
        return WATCHED_FPS if self._watched else FRAMES_NEEDED_FPS

    def connect_room(self, room: Room) -> None:
        self._room = room
        room.on_clinician_watching(self.clinician_watching)

    async def clinician_watching(self, watching: bool) -> None:
        """A clinician joined (True) or left (False): the camera at the rate their view needs."""
        self._watched = watching
        await self._apply_camera_rate()
        log.info("patient camera at %d fps (clinician watching: %s)", self.camera_fps, watching)

    async def _apply_camera_rate(self) -> None:
        if self._camera is not None:
            await self._camera.capture_participant_video(
                self._connection.pc_id, self.camera_fps, CAMERA_SOURCE
            )

    async def on_connected(self) -> None:
        """Once the transport has put the agent's voice on the connection, wrap it.

        The transport sets the camera's rate from its parameters on each connection; a clinician
        already watching keeps theirs.
        """
        if self._watched:
            await self._apply_camera_rate()
        if self._room is None:
            return
        transceivers = self._connection.pc.getTransceivers()
        agent_track = transceivers[0].sender.track if transceivers else None
        if agent_track is None or isinstance(agent_track, OverlayTrack):
            return
        overlay = OverlayTrack(agent_track, overlay=self._room.to_patient, on_frame=self._room.agent_said)
        self._connection.replace_audio_track(overlay)

    def show_video(self, track: MediaStreamTrack | None) -> None:
        transceivers = self._connection.pc.getTransceivers()
        if len(transceivers) > 1:
            transceivers[1].sender.replaceTrack(track)
