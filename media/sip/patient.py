"""The patient's side of a room when the patient is on the phone: voices only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from aiortc import MediaStreamTrack

from media.room import Room
from media.room_audio import AudioRing
from media.sip.g711 import SAMPLE_RATE as LINE_RATE
from media.sip.transport import SipCallTransport


class _RingSource:
    """A room ring read by the call's send clock: the clinician's voice, for the caller."""

    def __init__(self, ring: AudioRing) -> None:
        self._ring = ring

    def read(self, samples: int) -> np.ndarray | None:
        return self._ring.pull(samples) if len(self._ring) else None


class PhonePatient:
    """Mixes the clinician's voice into the call and reports the agent's voice to the room."""

    def __init__(self, transport: SipCallTransport) -> None:
        self._transport = transport
        self._undo: list[Callable[[], None]] = []

    def connect_room(self, room: Room) -> None:
        self._undo.append(self._transport.add_audio_source(_RingSource(room.to_patient)))
        heard = self._transport.tap_agent_audio(lambda samples: room.agent_said(samples, LINE_RATE))
        self._undo.append(heard)

    def show_video(self, track: MediaStreamTrack | None) -> None:
        """A phone cannot show the clinician's camera: the caller hears them only."""
