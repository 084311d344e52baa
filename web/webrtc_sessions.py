"""Browser sessions: an SDP offer in, an answer out, and a patient session (and its room) behind it."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass

from pipecat.transports.base_transport import TransportParams, VideoInSourceParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

from agent.channel import Channel
from media.host import LiveSession, SessionHost, Transport
from media.webrtc_patient import BrowserPatient
from pipeline.session import INPUT_RATE

OUTPUT_RATE = 24000
CAMERA_FPS = 8  # enough for a clinician to watch; the agent's sampler looks far less often
log = logging.getLogger(__name__)


@dataclass
class BrowserSession:
    session_id: str
    connection: SmallWebRTCConnection
    task: asyncio.Task | None = None
    live: LiveSession | None = None


AUDIO_LINE = re.compile(r"^m=audio ", re.MULTILINE)


class LinesBusy(Exception):
    """Every line is taken: the new session was not started (``SESSIONS__MAX_CONCURRENT``)."""


class UnreadableOffer(ValueError):
    """The offer's SDP could not be read: nothing was started and nothing is left open."""


class WebRTCSessions:
    """Every live browser connection of this process, by peer-connection id.

    A new session is admitted only while the host's live sessions (browser and phone) plus the
    offers still being set up are fewer than ``max_concurrent``; otherwise ``answer`` raises
    ``LinesBusy`` before anything is built.
    """

    def __init__(self, host: SessionHost, max_concurrent: int | None = None) -> None:
        self._host = host
        self._max_concurrent = max_concurrent
        self._sessions: dict[str, BrowserSession] = {}
        self._starting = 0  # admitted offers whose session is not in the host yet

    def __len__(self) -> int:
        return len(self._sessions)

    def in_use(self) -> int:
        """Lines taken: live sessions of every transport, and offers being set up."""
        return len(self._host) + self._starting

    async def answer(self, sdp: str, sdp_type: str, pc_id: str | None = None) -> dict:
        """Answer an offer: renegotiate a known connection or start a new session.

        The answer carries the session id, which names the patient's room.
        """
        if pc_id and pc_id in self._sessions:
            session = self._sessions[pc_id]
            try:
                await session.connection.renegotiate(sdp=sdp, type=sdp_type)
            except ValueError as exc:
                raise UnreadableOffer from exc
            return {**session.connection.get_answer(), "session_id": session.session_id}
        if self._max_concurrent is not None and self.in_use() >= self._max_concurrent:
            raise LinesBusy
        if not AUDIO_LINE.search(sdp):
            raise UnreadableOffer("the offer carries no audio")  # nothing to listen to: no session
        self._starting += 1  # the line is held from now: offers arriving meanwhile see it taken
        connection = SmallWebRTCConnection(ice_servers=[])
        try:
            await connection.initialize(sdp=sdp, type=sdp_type)
        except BaseException as exc:
            self._starting -= 1
            await connection.disconnect()  # no peer connection is left behind
            if isinstance(exc, ValueError):
                raise UnreadableOffer from exc
            raise
        session = BrowserSession(session_id=uuid.uuid4().hex, connection=connection)
        self._sessions[connection.pc_id] = session

        @connection.event_handler("closed")
        async def _closed(_connection: SmallWebRTCConnection) -> None:
            self._sessions.pop(_connection.pc_id, None)

        session.task = asyncio.create_task(self._run(session), name=f"webrtc-{connection.pc_id}")
        return {**connection.get_answer(), "session_id": session.session_id}

    async def _run(self, session: BrowserSession) -> None:
        try:
            try:
                live = await self._start(session)
            finally:
                self._starting -= 1  # the host counts the session from here on (or it never started)
            session.live = live
            await live.wait()
        finally:
            self._sessions.pop(session.connection.pc_id, None)

    async def _start(self, session: BrowserSession) -> LiveSession:
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=INPUT_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=OUTPUT_RATE,
            video_in_enabled=True,
            video_in_sources={"camera": VideoInSourceParams(framerate=CAMERA_FPS)},
        )
        transport = SmallWebRTCTransport(webrtc_connection=session.connection, params=params)
        patient = BrowserPatient(session.connection)

        @transport.event_handler("on_client_connected")
        async def _connected(_transport: SmallWebRTCTransport, _client: object) -> None:
            patient.on_connected()

        live = await self._host.start(
            transport,
            kind=Transport.WEBRTC,
            channel=Channel.VIDEO,
            session_id=session.session_id,
            output_rate=OUTPUT_RATE,
            patient=patient,
            patient_rate=OUTPUT_RATE,
        )

        @transport.event_handler("on_client_disconnected")
        async def _gone(_transport: SmallWebRTCTransport, _client: object) -> None:
            log.info("patient disconnected")
            await live.cancel()

        return live

    async def close(self, timeout_s: float = 10.0) -> None:
        """End every session: each pipeline is cancelled cleanly, then its connection closed."""
        sessions = list(self._sessions.values())
        for session in sessions:
            if session.live is not None:
                await session.live.cancel()
            await session.connection.disconnect()
        tasks = [s.task for s in sessions if s.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
        self._sessions.clear()
        self._starting = 0
