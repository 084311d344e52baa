"""A fake LiveKit connection for the tests: ``livekit.rtc``'s Room, audio source and streams.

No LiveKit server can run here. ``fake_livekit`` puts these in place of the ``livekit.rtc``
classes that pipecat's LiveKit transport drives, so the transport, the session host and the
pipeline run for real: the fake room records the URL and token the agent connects with and the
track it publishes, keeps what the agent says, and delivers participants' audio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from livekit import api, rtc

KEY, SECRET, URL = "APIclinic", "s" * 40, "wss://livekit.example.org"


def livekit_config() -> dict[str, Any]:
    """``LIVEKIT__*`` with rooms switched to LiveKit (a server that does not exist: it is faked)."""
    return {"enabled": True, "url": URL, "api_key": KEY, "api_secret": SECRET, "token_ttl_s": 120}


def claims_of(token: str) -> api.access_token.Claims:
    return api.TokenVerifier(KEY, SECRET).verify(token)


# --- the fake LiveKit connection ---------------------------------------------------------


class FakeSource:
    """``rtc.AudioSource``: what the agent says into the room is kept here."""

    def __init__(self, sample_rate: int, num_channels: int, queue_size_ms: int = 1000) -> None:
        self.sample_rate = sample_rate
        self.frames: list[rtc.AudioFrame] = []

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        self.frames.append(frame)

    async def aclose(self) -> None:
        pass


class FakeLocalTrack:
    def __init__(self, name: str, source: FakeSource) -> None:
        self.name, self.source = name, source

    @staticmethod
    def create_audio_track(name: str, source: FakeSource) -> FakeLocalTrack:
        return FakeLocalTrack(name, source)


class FakeParticipant:
    def __init__(self, identity: str) -> None:
        self.identity, self.name, self.metadata = identity, identity, ""
        self.track_publications: dict[str, Any] = {}


class FakeLocalParticipant(FakeParticipant):
    def __init__(self) -> None:
        super().__init__("")
        self.published: list[tuple[FakeLocalTrack, int]] = []

    async def publish_track(self, track: FakeLocalTrack, options: rtc.TrackPublishOptions) -> None:
        self.published.append((track, options.source))

    async def publish_data(self, *args: Any, **kwargs: Any) -> None:
        pass


class FakeRemoteAudio:
    """A participant's microphone: the frames it will deliver."""

    kind = rtc.TrackKind.KIND_AUDIO

    def __init__(self, frames: list[rtc.AudioFrame]) -> None:
        self.sid, self.frames = "TR_fake", frames


class FakeAudioStream:
    """``rtc.AudioStream``: a remote track's frames, then silence until it is closed."""

    def __init__(self, track: FakeRemoteAudio) -> None:
        self._frames = list(track.frames)
        self._closed = asyncio.Event()

    def __aiter__(self) -> FakeAudioStream:
        return self

    async def __anext__(self) -> rtc.AudioFrameEvent:
        if self._frames:
            await asyncio.sleep(0.01)  # in real time, as a microphone delivers them
            return rtc.AudioFrameEvent(self._frames.pop(0))
        await self._closed.wait()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._closed.set()


class FakeRoom:
    """``rtc.Room``: records the connection; ``join``/``leave`` play participants."""

    rooms: list[FakeRoom] = []

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.remote_participants: dict[str, FakeParticipant] = {}
        self.local_participant = FakeLocalParticipant()
        self.connected_to: tuple[str, str] | None = None
        self.disconnected = False
        FakeRoom.rooms.append(self)

    def on(self, event: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.handlers[event] = handler
            return handler

        return register

    async def connect(self, url: str, token: str, options: rtc.RoomOptions | None = None) -> None:
        self.connected_to = (url, token)
        self.local_participant.identity = claims_of(token).identity  # as the server would

    async def disconnect(self) -> None:
        self.disconnected = True

    def join(self, identity: str, frames: list[rtc.AudioFrame]) -> None:
        participant = FakeParticipant(identity)
        self.remote_participants[identity] = participant
        self.handlers["participant_connected"](participant)
        publication = type("Publication", (), {"sid": "PUB", "source": rtc.TrackSource.SOURCE_MICROPHONE})()
        self.handlers["track_subscribed"](FakeRemoteAudio(frames), publication, participant)

    def leave(self, identity: str) -> None:
        participant = self.remote_participants.pop(identity)
        self.handlers["participant_disconnected"](participant)

    @property
    def source(self) -> FakeSource:
        [(track, _source)] = self.local_participant.published
        return track.source


@pytest.fixture
def fake_livekit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    FakeRoom.rooms = []
    monkeypatch.setattr(rtc, "Room", FakeRoom)
    monkeypatch.setattr(rtc, "AudioSource", FakeSource)
    monkeypatch.setattr(rtc, "LocalAudioTrack", FakeLocalTrack)
    monkeypatch.setattr(rtc, "AudioStream", FakeAudioStream)
    yield


def tone(hz: float, amplitude: int, seconds: float = 0.5, rate: int = 48000) -> list[rtc.AudioFrame]:
    """A participant's microphone: 10 ms LiveKit frames at 48 kHz."""
    t = np.arange(int(rate * seconds)) / rate
    samples = (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    step = rate // 100
    return [
        rtc.AudioFrame(samples[i : i + step].tobytes(), rate, 1, step) for i in range(0, len(samples), step)
    ]
