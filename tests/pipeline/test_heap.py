"""An ended session's models are freed at once: a server's memory stays flat across sessions."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path

from pipecat.services.piper.tts import PiperTTSService

from configs.settings import Settings
from pipeline.session import warm_up
from tools.replay import run_replay


def piper_voices_alive() -> int:
    return sum(isinstance(obj, PiperTTSService) for obj in gc.get_objects())


async def test_an_ended_session_releases_its_voice_model(
    speak: Callable[..., Path], settings: Settings, tmp_path: Path
) -> None:
    warm_up(settings)  # as the server starts: models loaded, then the heap frozen
    assert gc.get_freeze_count() > 0

    await run_replay([speak("I have a rash on my arm.", tail_s=0.5)], tmp_path / "out", settings=settings)
    await asyncio.sleep(0)  # the collection runs on the loop's next turn
    # Each session has its own TTS service around the shared voice. Without the collection it stays in
    # memory until CPython's next full pass, many sessions later.
    assert piper_voices_alive() == 0
