"""Every live room of this process, by session id: what the clinician console acts on."""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCIceServer

from media.room import PatientSide, Room, RoomError


class Rooms:
    def __init__(self, ice_servers: Callable[[str], list[RTCIceServer]] | None = None) -> None:
        self._rooms: dict[str, Room] = {}
        self._ice_servers = ice_servers  # a session id -> the ICE servers of its clinician peer

    def open(self, session_id: str, patient: PatientSide, *, patient_rate: int) -> Room:
        ice = self._ice_servers
        servers: Callable[[], list[RTCIceServer]] = (lambda: ice(session_id)) if ice else list
        room = Room(session_id, patient, patient_rate=patient_rate, ice_servers=servers)
        self._rooms[session_id] = room
        return room

    async def close(self, session_id: str) -> None:
        room = self._rooms.pop(session_id, None)
        if room is not None:
            await room.close()

    def get(self, session_id: str) -> Room:
        room = self._rooms.get(session_id)
        if room is None:
            raise RoomError("the patient's session is no longer live")
        return room

    def is_live(self, session_id: str) -> bool:
        return session_id in self._rooms

    async def join(self, session_id: str, clinician_display_name: str, sdp: str, sdp_type: str) -> dict:
        return await self.get(session_id).join(clinician_display_name, sdp, sdp_type)

    async def request_summary(self, session_id: str) -> None:
        await self.get(session_id).request_summary()

    async def request_clinician(self, session_id: str) -> None:
        await self.get(session_id).request_clinician()

    async def hand_back(self, session_id: str) -> None:
        await self.get(session_id).hand_back()

    async def end(self, session_id: str) -> None:
        await self.get(session_id).end()
