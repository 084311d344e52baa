"""Fixtures for the SIP bridge: settings on loopback, a running server, a cheap echo session."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import BaseTransport

from configs.settings import Settings, load_settings
from media.host import LiveSession, SessionHost
from media.sip.server import SipServer
from media.sip.transaction import Timers
from pipeline.session import SessionContext


def free_rtp_range() -> tuple[int, int]:
    """A random slice of high ports, so that parallel test runs rarely meet."""
    low = 30000 + 2 * secrets.randbelow(10000)
    return low, low + 99


def sip_settings(tmp_path: Path, **sip: Any) -> Settings:
    low, high = free_rtp_range()
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "rtp_port_min": low, "rtp_port_max": high}
    values.update(sip)
    return load_settings(escalations_dir=tmp_path / "escalations", sip=values)


def with_lines(settings: Settings, lines: int, retry_after_s: int = 30) -> Settings:
    """``settings`` with ``SESSIONS__MAX_CONCURRENT`` (browser and phone together) set to ``lines``."""
    update = {"max_concurrent": lines, "busy_retry_after_s": retry_after_s}
    sessions = settings.sessions.model_copy(update=update)
    return settings.model_copy(update={"sessions": sessions})


class Echo(FrameProcessor):
    """The caller hears itself: input audio becomes output audio (a session without models)."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[np.ndarray] = []
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            samples = np.frombuffer(frame.audio, dtype=np.int16)
            self.heard.append(samples)
            await self.push_frame(OutputAudioRawFrame(frame.audio, frame.sample_rate, 1))
        else:
            self.frames.append(frame)
            await self.push_frame(frame, direction)


class EchoHost(SessionHost):
    """The real session host whose sessions echo the caller (fast: no models), optionally slow to start."""

    def __init__(self, settings: Settings, start_delay_s: float = 0.0) -> None:
        super().__init__(settings)
        self.start_delay_s = start_delay_s
        self.echoes: list[Echo] = []
        self.runs: list[dict[str, Any]] = []

    def session_processors(self, context: SessionContext) -> list[FrameProcessor]:
        echo = Echo()
        self.echoes.append(echo)
        return [echo]

    async def start(self, transport: BaseTransport, **kwargs: Any) -> LiveSession:  # type: ignore[override]
        self.runs.append(kwargs)
        await asyncio.sleep(self.start_delay_s)
        return await super().start(transport, **kwargs)


@pytest.fixture
async def echo_server(tmp_path: Path) -> AsyncIterator[SipServer]:
    settings = sip_settings(tmp_path, rtp_timeout_s=5.0)
    server = SipServer(settings, EchoHost(settings), timers=Timers(t1=0.05, t2=0.4))
    await server.start()
    yield server
    await server.stop()


async def wait_for(condition: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    """Poll ``condition`` until true or ``within`` seconds have passed (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(step)
    return condition()
