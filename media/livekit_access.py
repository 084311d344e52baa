"""Who may do what in a session's LiveKit room: access tokens with explicit grants, and dispatch.

For clinics that already run a LiveKit server (``LIVEKIT__URL``, docs/rooms.md). The room is named
by the session id. Every participant's token is minted here, signed with the clinic's API secret,
and says exactly what its holder may do, nothing by default:

* the patient may join that room only, publish their microphone and camera, and subscribe (to
  hear the agent and see the clinician); no data messages, no metadata of their own;
* a clinician, minted only when they join an escalation they claimed, may join that room,
  publish microphone and camera, and subscribe;
* the agent joins as an agent participant (LiveKit's ``agent`` grant), publishes its voice only,
  subscribes to the patient, and may send data messages (captions, escalation state).

Every token expires ``LIVEKIT__TOKEN_TTL_S`` after it is minted: it only has to last until its
holder joins. Identities carry no personal data: the role and a random suffix, the clinician's
account name (never a patient's).

``AgentDispatcher`` asks the LiveKit server to send the agent worker into a patient's room
(LiveKit's agent dispatch API), so the agent is in the room before the patient speaks.
``RoomAdmin.remove`` takes a participant out of a room (a clinician who handed back): a token
cannot be revoked, but its holder can be removed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from livekit import api

from configs.settings import LiveKitSettings


class Role(StrEnum):
    PATIENT = "patient"
    CLINICIAN = "clinician"
    AGENT = "agent"


MICROPHONE, CAMERA = "microphone", "camera"  # LiveKit's track source names


@dataclass(frozen=True)
class RoomAccess:
    """What a participant needs to join: where, as whom, with which token, until when."""

    url: str
    room: str
    identity: str
    token: str
    expires_at: float  # Unix time


class LiveKitNotConfigured(RuntimeError):
    pass


def grants_for(role: Role, room: str) -> api.VideoGrants:
    """The grants of one role in one room: exactly what the role needs."""
    if role == Role.AGENT:
        return api.VideoGrants(
            room_join=True,
            room=room,
            agent=True,
            can_publish=True,
            can_publish_sources=[MICROPHONE],
            can_subscribe=True,
            can_publish_data=True,
            can_update_own_metadata=False,
        )
    return api.VideoGrants(
        room_join=True,
        room=room,
        can_publish=True,
        can_publish_sources=[MICROPHONE, CAMERA],
        can_subscribe=True,
        can_publish_data=False,
        can_update_own_metadata=False,
    )


def mint(settings: LiveKitSettings, role: Role, room: str, *, name: str = "") -> RoomAccess:
    """A token for ``role`` in the session's room ``room``; ``name`` is a clinician's display name."""
    if not (settings.url and settings.api_key and settings.api_secret):
        raise LiveKitNotConfigured("LIVEKIT__URL, LIVEKIT__API_KEY and LIVEKIT__API_SECRET are not set")
    identity = f"{role.value}-{secrets.token_hex(6)}"
    minted_at = time.time()
    token = (
        api.AccessToken(settings.api_key, settings.api_secret.get_secret_value())
        .with_identity(identity)
        .with_name(name or role.value)
        .with_kind("agent" if role == Role.AGENT else "standard")
        .with_grants(grants_for(role, room))
        .with_ttl(timedelta(seconds=settings.token_ttl_s))
    )
    return RoomAccess(settings.url, room, identity, token.to_jwt(), minted_at + settings.token_ttl_s)


class AgentDispatcher:
    """Sends the agent worker into a patient's LiveKit room (the server's agent dispatch API)."""

    def __init__(self, settings: LiveKitSettings) -> None:
        if not (settings.url and settings.api_key and settings.api_secret):
            raise LiveKitNotConfigured("LIVEKIT__URL, LIVEKIT__API_KEY and LIVEKIT__API_SECRET are not set")
        self._settings = settings

    async def dispatch(self, room: str) -> str:
        """Ask for the agent in ``room``; the dispatch id. Raises what the server answers."""
        settings = self._settings
        secret = settings.api_secret.get_secret_value() if settings.api_secret else ""
        async with api.LiveKitAPI(settings.url, settings.api_key, secret) as client:
            dispatch = await client.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name=settings.agent_name, room=room)
            )
        return dispatch.id


class RoomAdmin:
    """The server's room API for what only the server may do: removing a participant."""

    def __init__(self, settings: LiveKitSettings) -> None:
        if not (settings.url and settings.api_key and settings.api_secret):
            raise LiveKitNotConfigured("LIVEKIT__URL, LIVEKIT__API_KEY and LIVEKIT__API_SECRET are not set")
        self._settings = settings

    async def remove(self, room: str, identity: str) -> None:
        """Take ``identity`` out of ``room`` now. Raises what the server answers."""
        settings = self._settings
        secret = settings.api_secret.get_secret_value() if settings.api_secret else ""
        async with api.LiveKitAPI(settings.url, settings.api_key, secret) as client:
            await client.room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity))
