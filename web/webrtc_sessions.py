"""Browser sessions: an SDP offer in, an answer out, and a patient session (and its room) behind it.

A browser session's life: admitted under the host's line cap (``SessionHost.reserve_line``,
shared with phone calls), answered, its models loaded off the event loop, then live until the
patient leaves. A patient who leaves is heard out (``LiveSession.hang_up``: the words already
received are transcribed and assessed) unless they left before the session started, which then
ends as soon as it starts. A connection whose ICE has not connected
``SESSIONS__CONNECT_DEADLINE_S`` after the answer is given up: its session cancelled, its
connection closed, its line freed. A
``pc_id`` opens its connection again (renegotiation) only to whoever holds the session's room
token, and is forgotten when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pipecat.transports.base_transport import TransportParams, VideoInSourceParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

from agent.channel import Channel
from media.host import Line, LinesBusy, LiveSession, SessionHost, Transport
from media.turn import IceServer
from media.webrtc_patient import BrowserPatient
from pipeline.camera import FRAMES_NEEDED_FPS
from pipeline.resume import ResumePoint
from pipeline.session import INPUT_RATE

__all__ = ["LinesBusy", "NotYourConnection", "UnreadableOffer", "WebRTCSessions"]
OUTPUT_RATE = 24000
# The camera as the agent's sampler needs it; while a clinician watches, BrowserPatient raises it.
CAMERA_FPS = FRAMES_NEEDED_FPS
# A browser whose ICE has not connected by then never will (loopback or LAN takes well under a
# second, a TURN relay a few): its session and its line are freed. A setting is wanted for it.
CONNECT_DEADLINE_S = 20.0
STOP_TIMEOUT_S = 5.0  # each step of closing one session (cancel, disconnect) is bounded by this
GONE_STATES = ("closed", "failed")  # the peer connection's states that end a session
log = logging.getLogger(__name__)


@dataclass
class BrowserSession:
    session_id: str
    connection: SmallWebRTCConnection
    task: asyncio.Task | None = None
    live: LiveSession | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # the patient left (or never came)
    leaving: asyncio.Task | None = None  # the hang-up in progress
    deadline: asyncio.Task | None = None  # the ICE connect deadline, while it waits
    ending: asyncio.Task | None = None  # the same task once it ends the session
    resume: ResumePoint | None = None  # where the session it goes on from stood


AUDIO_LINE = re.compile(r"^m=audio ", re.MULTILINE)


class UnreadableOffer(ValueError):
    """The offer's SDP could not be read: nothing was started and nothing is left open."""


# RFC 8839: an ICE username fragment and password are at most 256 characters; no line of a
# browser's offer comes near the line limit. A longer one is not a browser's offer.
ICE_CREDENTIAL = re.compile(r"^a=ice-(?:ufrag|pwd):(.*)$", re.MULTILINE)
MAX_ICE_CREDENTIAL = 256
MAX_SDP_LINE = 4096


def check_offer(sdp: str) -> None:
    """Refuse (``UnreadableOffer``) what no browser sends, before anything is built for it."""
    if not AUDIO_LINE.search(sdp):
        raise UnreadableOffer("the offer carries no audio")  # nothing to listen to: no session
    if any(len(line) > MAX_SDP_LINE for line in sdp.splitlines()):
        raise UnreadableOffer("a line of the offer is too long")
    if any(len(value.strip()) > MAX_ICE_CREDENTIAL for value in ICE_CREDENTIAL.findall(sdp)):
        raise UnreadableOffer("the offer's ICE credentials are too long")


def transport_params() -> TransportParams:
    """A browser session's media: 16 kHz audio in, 24 kHz out, the camera at the sampler's rate."""
    return TransportParams(
        audio_in_enabled=True,
        audio_in_sample_rate=INPUT_RATE,
        audio_out_enabled=True,
        audio_out_sample_rate=OUTPUT_RATE,
        video_in_enabled=True,
        video_in_sources={"camera": VideoInSourceParams(framerate=CAMERA_FPS)},
    )


class NotYourConnection(PermissionError):
    """A renegotiation of a live connection without that session's room token."""


class WebRTCSessions:
    """Every live browser connection of this process, by peer-connection id.

    A new session is admitted only while the host's lines (``SessionHost.in_use``: live sessions
    of every transport, and the ones being set up) are fewer than ``max_concurrent`` (by default
    the host's ``SESSIONS__MAX_CONCURRENT``); otherwise ``answer`` raises ``LinesBusy`` before
    anything is built.
    """

    def __init__(
        self,
        host: SessionHost,
        max_concurrent: int | None = None,
        *,
        connect_deadline_s: float = CONNECT_DEADLINE_S,
        ice_servers: Callable[[str], list[IceServer]] | None = None,
    ) -> None:
        self._host = host
        self._max_concurrent = max_concurrent
        self._connect_deadline_s = connect_deadline_s
        # A session's STUN/TURN servers, by session id (media/turn.py); none: host candidates only.
        self._ice_servers = ice_servers or (lambda _session_id: [])
        self._sessions: dict[str, BrowserSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def in_use(self) -> int:
        """Lines taken: live sessions of every transport, and sessions being set up."""
        return self._host.in_use()

    async def answer(
        self,
        sdp: str,
        sdp_type: str,
        pc_id: str | None = None,
        *,
        may_renegotiate: Callable[[str], bool] | None = None,
        resume: ResumePoint | None = None,
    ) -> dict:
        """Answer an offer: renegotiate a known connection or start a new session.

        ``resume``: the new session goes on from where a session cut off stood, under its id (the
        caller checked the patient's room token for it; ``pipeline/resume.py``).

        Renegotiating a live connection (its ``pc_id``) changes the patient's media, so it needs
        ``may_renegotiate(session_id)`` to say yes (the caller showed that session's room token);
        otherwise ``NotYourConnection``. The answer carries the session id, which names the
        patient's room.
        """
        if pc_id and pc_id in self._sessions:
            session = self._sessions[pc_id]
            if may_renegotiate is None or not may_renegotiate(session.session_id):
                raise NotYourConnection
            check_offer(sdp)
            try:
                await session.connection.renegotiate(sdp=sdp, type=sdp_type)
            except Exception as exc:  # aiortc's parser fails in many ways on a broken offer
                raise UnreadableOffer from exc
            return {**session.connection.get_answer(), "session_id": session.session_id}
        line = self._host.reserve_line(self._max_concurrent)  # held from now, phone calls included
        try:
            if sdp_type != "offer":
                raise UnreadableOffer("a new session starts from an offer")
            check_offer(sdp)
        except UnreadableOffer:
            line.release()
            raise
        session_id = resume.session_id if resume else uuid.uuid4().hex
        servers = [server.for_server() for server in self._ice_servers(session_id)]
        connection = SmallWebRTCConnection(ice_servers=servers)
        try:
            await connection.initialize(sdp=sdp, type=sdp_type)
        except BaseException as exc:
            line.release()
            await connection.disconnect()  # no peer connection is left behind
            if isinstance(exc, Exception):  # aiortc's parser asserts, indexes and looks up on bad SDP
                raise UnreadableOffer from exc
            raise  # a cancellation stays one
        session = BrowserSession(session_id=session_id, connection=connection, resume=resume)
        self._sessions[connection.pc_id] = session

        @connection.event_handler("closed")
        async def _closed(_connection: SmallWebRTCConnection) -> None:
            self._patient_left(session)

        @connection.event_handler("failed")
        async def _failed(_connection: SmallWebRTCConnection) -> None:
            self._patient_left(session)

        session.task = asyncio.create_task(self._run(session, line), name=f"webrtc-{connection.pc_id}")
        session.deadline = asyncio.create_task(self._connect_deadline(session), name="webrtc-ice-deadline")
        return {**connection.get_answer(), "session_id": session.session_id}

    def _patient_left(self, session: BrowserSession) -> None:
        """The browser is gone: a live session hears out the last words; a starting one ends on start."""
        if session.gone.is_set():
            return
        session.gone.set()
        if session.live is not None and session.leaving is None:
            log.info("patient disconnected")
            session.leaving = asyncio.create_task(session.live.hang_up(), name="webrtc-hang-up")

    async def _connect_deadline(self, session: BrowserSession) -> None:
        """Give up on a connection whose ICE has not connected in time (its line is freed)."""
        deadline = time.monotonic() + self._connect_deadline_s
        while time.monotonic() < deadline:
            state = session.connection.pc.connectionState
            if state == "connected" or session.leaving is not None:
                return  # connected (or heard out after connecting): the disconnect events end it
            if state in GONE_STATES or session.gone.is_set():
                break
            await asyncio.sleep(0.2)
        else:
            log.warning("ICE did not connect within %.0f s: session ended", self._connect_deadline_s)
        session.gone.set()
        session.ending, session.deadline = session.deadline, None  # an ending now, not a timer to cancel
        await self._end(session)

    async def _end(self, session: BrowserSession) -> None:
        """Cancel the session (if it started) and close its connection, each step bounded."""
        session.gone.set()
        if session.live is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.live.cancel(), STOP_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.connection.disconnect(), STOP_TIMEOUT_S)

    async def _run(self, session: BrowserSession, line: Line) -> None:
        try:
            live = await self._start(session, line)
            session.live = live
            if session.gone.is_set():
                # The patient left (or never connected) while the models loaded: nothing was heard.
                log.info("patient left before the session started: ended")
                await live.cancel()
            await live.wait()
        finally:
            line.release()  # idempotent: already released once the session was live
            self._sessions.pop(session.connection.pc_id, None)  # the pc_id is forgotten with it
            if session.deadline is not None:
                session.deadline.cancel()
            session.gone.set()  # our own disconnect below is not the patient leaving
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.connection.disconnect(), STOP_TIMEOUT_S)

    async def _start(self, session: BrowserSession, line: Line) -> LiveSession:
        transport = SmallWebRTCTransport(webrtc_connection=session.connection, params=transport_params())
        patient = BrowserPatient(session.connection, camera=transport)

        @transport.event_handler("on_client_connected")
        async def _connected(_transport: SmallWebRTCTransport, _client: object) -> None:
            await patient.on_connected()

        # Before the start: a patient who leaves while the models load is not missed.
        @transport.event_handler("on_client_disconnected")
        async def _gone(_transport: SmallWebRTCTransport, _client: object) -> None:
            self._patient_left(session)

        return await self._host.start(
            transport,
            kind=Transport.WEBRTC,
            channel=Channel.VIDEO,
            session_id=session.session_id,
            output_rate=OUTPUT_RATE,
            patient=patient,
            patient_rate=OUTPUT_RATE,
            line=line,
            resume=session.resume,
        )

    async def close(self, timeout_s: float = 10.0) -> None:
        """End every session: pipelines cancelled, connections closed; bounded by ``timeout_s``.

        Every step is bounded, so a connection whose ICE never completed (or a peer that does
        not answer) cannot hold the server's shut-down.
        """
        sessions = list(self._sessions.values())
        self._sessions.clear()
        if not sessions:
            return
        ends = [asyncio.create_task(self._end(session)) for session in sessions]
        tasks = [t for s in sessions for t in (s.task, s.leaving, s.deadline, s.ending) if t is not None]
        _done, pending = await asyncio.wait([*ends, *tasks], timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("%d session tasks did not end within %.0f s: cancelled", len(pending), timeout_s)
            await asyncio.wait(pending, timeout=1.0)
