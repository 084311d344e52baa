"""The patient's side of a room when the patient is in a browser (pipecat's SmallWebRTC)."""

from __future__ import annotations

import logging

from aiortc import MediaStreamTrack
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

from media.room import Room
from media.room_audio import OverlayTrack

log = logging.getLogger(__name__)


class BrowserPatient:
    """Adds the clinician's voice to the agent's audio track and shows the clinician's camera."""

    def __init__(self, connection: SmallWebRTCConnection) -> None:
        self._connection = connection
        self._room: Room | None = None

    def connect_room(self, room: Room) -> None:
        self._room = room

    def on_connected(self) -> None:
        """Once the transport has put the agent's voice on the connection, wrap it."""
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
