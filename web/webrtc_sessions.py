"""Browser sessions: an SDP offer in, an answer out, and a patient session running behind it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pipecat.transports.base_transport import TransportParams, VideoInSourceParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

from pipeline.host import LiveSession, SessionHost
from pipeline.session import INPUT_RATE

OUTPUT_RATE = 24000
log = logging.getLogger(__name__)


@dataclass
class BrowserSession:
    connection: SmallWebRTCConnection
    task: asyncio.Task | None = None


class WebRTCSessions:
    """Every live browser connection of this process, by peer-connection id."""

    def __init__(self, host: SessionHost) -> None:
        self._host = host
        self._sessions: dict[str, BrowserSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    async def answer(self, sdp: str, sdp_type: str, pc_id: str | None = None) -> dict:
        """Answer an offer: renegotiate a known connection or start a new session."""
        if pc_id and pc_id in self._sessions:
            connection = self._sessions[pc_id].connection
            await connection.renegotiate(sdp=sdp, type=sdp_type)
            return connection.get_answer()
        connection = SmallWebRTCConnection(ice_servers=[])
        await connection.initialize(sdp=sdp, type=sdp_type)
        session = BrowserSession(connection=connection)
        self._sessions[connection.pc_id] = session

        @connection.event_handler("closed")
        async def _closed(_connection: SmallWebRTCConnection) -> None:
            self._sessions.pop(_connection.pc_id, None)

        session.task = asyncio.create_task(self._run(session), name=f"webrtc-{connection.pc_id}")
        return connection.get_answer()

    async def _run(self, session: BrowserSession) -> None:
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=INPUT_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=OUTPUT_RATE,
            video_in_enabled=True,
            video_in_sources={"camera": VideoInSourceParams(framerate=2)},
        )
        transport = SmallWebRTCTransport(webrtc_connection=session.connection, params=params)

        def started(live: LiveSession) -> None:
            @transport.event_handler("on_client_disconnected")
            async def _gone(_transport: SmallWebRTCTransport, _client: object) -> None:
                log.info("patient disconnected")
                await live.worker.cancel()

        try:
            await self._host.run(
                transport,
                transport_name="webrtc",
                channel="video",
                output_rate=OUTPUT_RATE,
                on_started=started,
            )
        finally:
            self._sessions.pop(session.connection.pc_id, None)

    async def close(self) -> None:
        for session in list(self._sessions.values()):
            await session.connection.disconnect()
            if session.task is not None:
                session.task.cancel()
        self._sessions.clear()
