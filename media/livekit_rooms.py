"""Patient sessions in LiveKit rooms (``LIVEKIT__ENABLED``): the agent joins the patient's room.

For clinics that already run a LiveKit server (docs/rooms.md). A new session is opened here
instead of from a WebRTC offer: the server picks the session id (which names the LiveKit room),
admits it under the same line cap as every transport (``SessionHost.reserve_line``), mints the
patient's token for that room, and starts the session on this replica with pipecat's LiveKit
transport: the agent joins the room as a participant with its own agent token, publishes its
voice and hears the patient. The session is assembled by ``SessionHost.start`` like a browser or
phone session, so the same processors run and its escalations reach the same clinician queue.

The agent hears and sees the patient only (``PatientOnlyInput``): a clinician in the room talks
to the patient, and what they say must not be transcribed and assessed as the patient's words.
Participants are told apart by their identity, which this server minted (``media/livekit_access``).

``LiveKitRooms`` is also what the console acts on (``web/clinician.py``'s ``Rooms``): a clinician
who joins an escalation they claimed gets a token for that room, and the agent announces them
when they are in it; a hand-back or an end takes them out of the room through the server API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputImageRawFrame,
    UserAudioRawFrame,
    UserImageRawFrame,
)
from pipecat.transports.base_transport import VideoInSourceParams
from pipecat.transports.livekit.transport import LiveKitInputTransport, LiveKitParams, LiveKitTransport

from agent.channel import Channel
from configs.settings import Settings
from media.host import Line, LiveSession, SessionHost, Transport
from media.livekit_access import Role, RoomAccess, RoomAdmin, mint
from media.room import GOODBYE_S, RoomError
from pipeline.camera import FRAMES_NEEDED_FPS
from pipeline.frames import (
    ClinicianExit,
    ClinicianJoinedFrame,
    ClinicianLeftFrame,
    ClinicianRequestFrame,
    SummaryRequestFrame,
)
from pipeline.resume import ResumePoint
from pipeline.session import INPUT_RATE

OUTPUT_RATE = 24000
STOP_TIMEOUT_S = 5.0
log = logging.getLogger(__name__)


def is_role(identity: str | None, role: Role) -> bool:
    """Whether a participant's identity (minted here: ``<role>-<random>``) is of ``role``."""
    return bool(identity) and str(identity).startswith(f"{role.value}-")


def agent_params() -> LiveKitParams:
    """The agent's media: the patient's audio at 16 kHz and camera at the sampler's rate, voice out."""
    return LiveKitParams(
        audio_in_enabled=True,
        audio_in_sample_rate=INPUT_RATE,
        audio_out_enabled=True,
        audio_out_sample_rate=OUTPUT_RATE,
        video_in_enabled=True,
        video_in_sources={"camera": VideoInSourceParams(framerate=FRAMES_NEEDED_FPS)},
    )


class PatientOnlyInput(LiveKitInputTransport):
    """The room's media as the agent takes it in: the patient's, nobody else's."""

    async def push_audio_frame(self, frame: InputAudioRawFrame) -> None:
        if isinstance(frame, UserAudioRawFrame) and not is_role(frame.user_id, Role.PATIENT):
            return  # a clinician's voice is for the patient, not for the triage
        await super().push_audio_frame(frame)

    async def push_video_frame(self, frame: InputImageRawFrame) -> None:
        if isinstance(frame, UserImageRawFrame) and not is_role(frame.user_id, Role.PATIENT):
            return
        await super().push_video_frame(frame)


class AgentTransport(LiveKitTransport):
    """Pipecat's LiveKit transport whose input passes on the patient's media only."""

    def input(self) -> LiveKitInputTransport:
        if not self._input:
            self._input = PatientOnlyInput(self, self._client, self._params, name=self._input_name)
        return self._input


@dataclass
class LiveKitSession:
    session_id: str
    resume: ResumePoint | None = None
    live: LiveSession | None = None
    task: asyncio.Task | None = None
    patient_came: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # the patient left
    leaving: asyncio.Task | None = None  # the hang-up in progress
    clinicians: dict[str, str] = field(default_factory=dict)  # identity minted -> display name
    in_room: set[str] = field(default_factory=set)  # clinician identities in the room now
    closing: asyncio.Task | None = None


class LiveKitRooms:
    """Every LiveKit session of this replica, by session id (= room name)."""

    takes_offer = False  # a clinician's join carries no SDP: their browser connects to LiveKit

    def __init__(
        self,
        host: SessionHost,
        settings: Settings,
        *,
        connect_deadline_s: float | None = None,
        make_transport: Callable[[RoomAccess], LiveKitTransport] | None = None,
        admin: RoomAdmin | None = None,
    ) -> None:
        self._host = host
        self._settings = settings
        self._livekit = settings.livekit
        self._connect_deadline_s = connect_deadline_s or settings.sessions.connect_deadline_s
        self._make_transport = make_transport or (
            lambda access: AgentTransport(access.url, access.token, access.room, params=agent_params())
        )
        self._admin = admin or RoomAdmin(settings.livekit)
        self._sessions: dict[str, LiveKitSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    async def open(self, resume: ResumePoint | None = None) -> RoomAccess:
        """A new session (or ``resume``'s, under its id): the patient's access to its room.

        Raises ``LinesBusy`` (nothing started) when every line is taken.
        """
        line = self._host.reserve_line(self._settings.sessions.max_concurrent)
        try:
            session_id = resume.session_id if resume else uuid.uuid4().hex
            patient = mint(self._livekit, Role.PATIENT, session_id)
            agent = mint(self._livekit, Role.AGENT, session_id)
        except BaseException:
            line.release()
            raise
        session = LiveKitSession(session_id, resume=resume)
        self._sessions[session_id] = session
        session.task = asyncio.create_task(self._run(session, agent, line), name=f"livekit-{session_id[:8]}")
        return patient

    async def _run(self, session: LiveKitSession, agent: RoomAccess, line: Line) -> None:
        try:
            transport = self._make_transport(agent)
            self._watch(transport, session)
            live = await self._host.start(
                transport,
                kind=Transport.LIVEKIT,
                channel=Channel.VIDEO,
                session_id=session.session_id,
                output_rate=OUTPUT_RATE,
                line=line,
                resume=session.resume,
            )
            session.live = live
            if session.gone.is_set():
                log.info("patient left before the session started: ended")
                await live.cancel()
            await self._until_patient_comes(session, live)
            await live.wait()
        except Exception:  # noqa: BLE001 - one session failing must not take the others down
            log.exception("LiveKit session failed")
        finally:
            line.release()  # idempotent: already released once the session was live
            if self._sessions.get(session.session_id) is session:
                self._sessions.pop(session.session_id, None)

    async def _until_patient_comes(self, session: LiveKitSession, live: LiveSession) -> None:
        """Cancel the session if the patient is not in its room within the connect deadline."""
        came = asyncio.create_task(session.patient_came.wait())
        ended = [live.task] if live.task is not None else []
        try:
            await asyncio.wait(
                [came, *ended], timeout=self._connect_deadline_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            came.cancel()
        if not session.patient_came.is_set() and not (live.task is None or live.task.done()):
            log.warning("no patient in the room after %.0f s: session ended", self._connect_deadline_s)
            await live.cancel()

    def _watch(self, transport: LiveKitTransport, session: LiveKitSession) -> None:
        """Who comes and goes in the room: the patient (the session's life) and clinicians."""

        @transport.event_handler("on_participant_connected")
        async def _joined(_transport: LiveKitTransport, identity: str) -> None:
            if is_role(identity, Role.PATIENT):
                session.patient_came.set()
            elif identity in session.clinicians and identity not in session.in_room:
                session.in_room.add(identity)
                await self._tell_agent(session, ClinicianJoinedFrame(clinician=session.clinicians[identity]))
                log.info("clinician joined the LiveKit room")

        @transport.event_handler("on_participant_disconnected")
        async def _left(_transport: LiveKitTransport, identity: str) -> None:
            if is_role(identity, Role.PATIENT):
                self._patient_left(session)
            else:
                session.in_room.discard(identity)

    def _patient_left(self, session: LiveKitSession) -> None:
        """The patient is gone: what they said is heard out (``LiveSession.hang_up``), then the end."""
        if session.gone.is_set():
            return
        session.gone.set()
        if session.live is not None and session.leaving is None:
            log.info("patient left the LiveKit room")
            session.leaving = asyncio.create_task(session.live.hang_up(), name="livekit-hang-up")

    # --- the console's side (web/clinician.py's Rooms) ------------------------------------

    def _get(self, session_id: str) -> LiveKitSession:
        session = self._sessions.get(session_id)
        if session is None or session.live is None:
            raise RoomError("the patient's session is no longer live")
        return session

    def is_live(self, session_id: str) -> bool:
        session = self._sessions.get(session_id)
        return session is not None and session.live is not None and not session.gone.is_set()

    async def _tell_agent(self, session: LiveKitSession, frame: Frame) -> None:
        if session.live is None:
            raise RoomError("the session has no agent yet")
        await session.live.worker.queue_frame(frame)

    async def join(self, session_id: str, clinician_display_name: str, sdp: str, sdp_type: str) -> dict:
        """A clinician's access to the room (no SDP: their browser connects to LiveKit itself).

        The agent announces them once they are in the room, not when the token is minted.
        """
        del sdp, sdp_type  # the console sends none with LiveKit
        session = self._get(session_id)
        access = mint(self._livekit, Role.CLINICIAN, session_id, name=clinician_display_name)
        session.clinicians[access.identity] = clinician_display_name
        return {
            "url": access.url,
            "token": access.token,
            "room": access.room,
            "expires_at": access.expires_at,
        }

    async def request_summary(self, session_id: str) -> None:
        await self._tell_agent(self._get(session_id), SummaryRequestFrame())

    async def request_clinician(self, session_id: str) -> None:
        await self._tell_agent(self._get(session_id), ClinicianRequestFrame(how="button"))

    async def hand_back(self, session_id: str) -> None:
        await self._clinicians_leave(self._get(session_id), ClinicianExit.HANDED_BACK)

    async def end(self, session_id: str) -> None:
        """The clinician ends the session: the agent says goodbye, then the session closes."""
        session = self._get(session_id)
        await self._clinicians_leave(session, ClinicianExit.ENDED)
        session.closing = asyncio.create_task(
            self._end_after_goodbye(session), name=f"livekit-end-{session_id[:8]}"
        )

    async def _end_after_goodbye(self, session: LiveKitSession) -> None:
        await asyncio.sleep(GOODBYE_S)
        if session.live is not None:
            await session.live.worker.queue_frame(EndFrame())

    async def _clinicians_leave(self, session: LiveKitSession, outcome: ClinicianExit) -> None:
        """Every clinician minted for the room is taken out of it; the agent is told."""
        names = list(session.clinicians.values())
        for identity in list(session.clinicians):
            try:
                await asyncio.wait_for(self._admin.remove(session.session_id, identity), STOP_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - not in the room (never came, already left)
                log.info("clinician not removed from the LiveKit room (%s)", type(exc).__name__)
        session.clinicians.clear()
        session.in_room.clear()
        await self._tell_agent(
            session, ClinicianLeftFrame(clinician=names[-1] if names else "the clinician", outcome=outcome)
        )
        log.info("clinician left the LiveKit room: %s", outcome.value)

    async def close(self, timeout_s: float = 10.0) -> None:
        """End every session (shut-down): pipelines cancelled, the agent leaves each room."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            session.gone.set()  # one still starting is cancelled as soon as it starts
            if session.live is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(session.live.cancel(), STOP_TIMEOUT_S)
        tasks = [t for s in sessions for t in (s.task, s.leaving, s.closing) if t is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
