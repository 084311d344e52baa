"""An ended session's models are freed at once: a server's memory stays flat across sessions."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path

import pytest
from pipecat.services.piper.tts import PiperTTSService

from configs.settings import Settings
from pipeline import heap
from pipeline.heap import release_free_heap
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


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_the_heap_an_ended_session_freed_goes_back_to_the_system() -> None:
    """Without it glibc keeps freed pages for reuse: the server's memory after a day of
    sessions is its peak, not what it holds."""
    blocks = [bytes(1024) for _ in range(150_000)]  # ~150 MB of small allocations on the heap
    pinned = bytes(1024)  # allocated above them: glibc cannot shrink the heap's top past it
    del blocks
    before = resident_mib()
    assert release_free_heap()
    assert before - resident_mib() > 75
    del pinned


async def test_an_ended_session_gives_its_free_heap_back(monkeypatch: pytest.MonkeyPatch) -> None:
    released = asyncio.Event()
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(heap, "release_free_heap", lambda: bool(loop.call_soon_threadsafe(released.set)))
    heap.collect_ended_session()
    await asyncio.wait_for(released.wait(), timeout=5)
