"""A patient's live room: the patient, the agent, and a clinician who joins after an escalation.

In the embedded default one server process routes the room's media itself (aiortc): each
participant receives the others' audio, the clinician sees the patient's camera and the
patient the clinician's. The agent is a participant -- the session's pipeline -- not the
room: it is told who joins and leaves with frames, and its voice reaches the others the way
the patient hears it. A LiveKit room can take this class's place when one machine is not
enough (docs/rooms.md): the same joins, the same frames to the agent.

The patient's side depends on the transport (``PatientSide``): a browser (WebRTC) or a phone
call (SIP) each know how to add the clinician's voice to what the patient hears.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from aiortc import MediaStreamTrack, RTCIceServer
from pipecat.frames.frames import EndFrame, Frame, SystemFrame
from pipecat.pipeline.worker import PipelineWorker

from media.clinician_peer import CLINICIAN_RATE, ClinicianPeer
from media.room_audio import AudioRing
from media.video_tracks import LatestFrameTrack
from pipeline.frames import (
    ClinicianExit,
    ClinicianJoinedFrame,
    ClinicianLeftFrame,
    ClinicianRequestFrame,
    SummaryRequestFrame,
)

log = logging.getLogger(__name__)
GOODBYE_S = 8.0  # time for the agent's goodbye to play before the session ends
VOICE_RMS = 300.0  # int16 RMS above which the clinician's microphone carries speech, not room hiss
ACTIVITY_EVERY_S = 1.0  # how often a talking clinician tells the session it is not idle


@dataclass
class ClinicianSpeakingFrame(SystemFrame):
    """The clinician in the room is talking: the session is in use (its idle timeout starts over).

    The clinician's voice goes straight to the patient, never through the pipeline, so without
    this a long conversation between them would look like a silent session.
    """


class PatientSide(Protocol):
    """What the room needs from the patient's transport."""

    def connect_room(self, room: Room) -> None:
        """From now on, mix ``room.to_patient`` into what the patient hears and report the
        agent's voice as played with ``room.agent_said``."""

    def show_video(self, track: MediaStreamTrack | None) -> None:
        """Show the patient a video (the clinician's camera), or stop (None)."""


ClinicianWatching = Callable[[bool], Awaitable[None]]
"""Told True when a clinician joins (they see the patient's camera) and False when they leave."""


class RoomError(RuntimeError):
    """A room operation that cannot be done now (no such session, someone already joined ...)."""


class Room:
    def __init__(
        self,
        session_id: str,
        patient: PatientSide,
        *,
        patient_rate: int,
        ice_servers: Callable[[], list[RTCIceServer]] = list,
    ) -> None:
        self.session_id = session_id
        self._ice_servers = ice_servers  # fresh TURN credentials for each clinician who joins
        self._patient = patient
        self.to_patient = AudioRing(patient_rate)  # the clinician's voice, for the patient
        self._patient_for_clinician = AudioRing(CLINICIAN_RATE)
        self._agent_for_clinician = AudioRing(CLINICIAN_RATE)
        self._patient_video = LatestFrameTrack()
        self._worker: PipelineWorker | None = None
        self._clinician: ClinicianPeer | None = None
        self.clinician_name: str | None = None
        self._closing: asyncio.Task | None = None
        self._activity: asyncio.Task | None = None
        self._last_activity = 0.0
        self._watchers: list[ClinicianWatching] = []

    # --- the agent participant ----------------------------------------------------------

    def attach_agent(self, worker: PipelineWorker) -> None:
        self._worker = worker

    async def tell_agent(self, frame: Frame) -> None:
        if self._worker is None:
            raise RoomError("the session has no agent yet")
        await self._worker.queue_frame(frame)

    # --- media taps (called by the room observer and the patient's transport) ---------

    def patient_said(self, samples: np.ndarray, rate: int) -> None:
        if self._clinician is not None:
            self._patient_for_clinician.push(samples, rate)

    def patient_showed(self, rgb: np.ndarray) -> None:
        self._patient_video.show(rgb)

    def agent_said(self, samples: np.ndarray, rate: int) -> None:
        if self._clinician is not None:
            self._agent_for_clinician.push(samples, rate)

    def _clinician_said(self, samples: np.ndarray, rate: int) -> None:
        self.to_patient.push(samples, rate)
        self._note_clinician_activity(samples)

    def _note_clinician_activity(self, samples: np.ndarray) -> None:
        """A clinician who talks keeps the session from timing out as idle (at most once a second)."""
        now = time.monotonic()
        if self._worker is None or now - self._last_activity < ACTIVITY_EVERY_S or samples.size == 0:
            return
        if float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) < VOICE_RMS:
            return
        if self._activity is not None and not self._activity.done():
            return
        self._last_activity = now
        self._activity = asyncio.get_running_loop().create_task(
            self._worker.queue_frame(ClinicianSpeakingFrame()), name=f"room-activity-{self.session_id[:8]}"
        )

    # --- the clinician ------------------------------------------------------------------

    def on_clinician_watching(self, watcher: ClinicianWatching) -> None:
        """Tell ``watcher`` when a clinician starts and stops watching the patient's camera.

        The patient's transport sends the camera at the full rate only while someone watches it.
        """
        self._watchers.append(watcher)

    async def _tell_watchers(self, watching: bool) -> None:
        for watcher in self._watchers:
            try:
                await watcher(watching)
            except Exception:  # noqa: BLE001 - a camera rate is never worth a failed join or leave
                log.warning("a camera watcher failed", exc_info=True)

    async def join(self, name: str, sdp: str, sdp_type: str) -> dict[str, str]:
        """The clinician's browser joins: an SDP answer back, and the agent announces them."""
        if self._clinician is not None:
            raise RoomError("a clinician is already in this room")
        peer = ClinicianPeer(
            hears=[self._patient_for_clinician, self._agent_for_clinician],
            sees=self._patient_video,
            on_audio=self._clinician_said,
            on_video=self._patient.show_video,
            ice_servers=self._ice_servers(),
        )
        answer = await peer.answer(sdp, sdp_type)
        self._clinician, self.clinician_name = peer, name
        await self._tell_watchers(True)
        await self.tell_agent(ClinicianJoinedFrame(clinician=name))
        log.info("clinician joined the room")
        return answer

    async def request_summary(self) -> None:
        await self.tell_agent(SummaryRequestFrame())

    async def request_clinician(self, how: str = "button") -> None:
        await self.tell_agent(ClinicianRequestFrame(how=how))

    async def hand_back(self) -> None:
        await self._clinician_leaves(ClinicianExit.HANDED_BACK)

    async def end(self) -> None:
        """The clinician ends the session: the agent says goodbye, then the session closes."""
        await self._clinician_leaves(ClinicianExit.ENDED)
        self._closing = asyncio.create_task(self._end_after_goodbye(), name=f"room-end-{self.session_id}")

    async def _end_after_goodbye(self) -> None:
        await asyncio.sleep(GOODBYE_S)
        if self._worker is not None:
            await self._worker.queue_frame(EndFrame())

    async def _clinician_leaves(self, outcome: ClinicianExit) -> None:
        name = self.clinician_name or "the clinician"
        if self._clinician is not None:
            await self._clinician.close()
        self._clinician, self.clinician_name = None, None
        self._patient.show_video(None)
        await self._tell_watchers(False)
        await self.tell_agent(ClinicianLeftFrame(clinician=name, outcome=outcome))
        log.info("clinician left the room: %s", outcome.value)

    async def close(self) -> None:
        if self._clinician is not None:
            await self._clinician.close()
            self._clinician = None
