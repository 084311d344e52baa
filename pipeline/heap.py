"""Memory across sessions: an ended session's models are freed at once, not many sessions later.

A session's pipeline is a web of reference cycles (processors link both ways, tasks and event
handlers refer to their owners), so only the cyclic garbage collector's full pass frees it:
its buffers, its models' per-session state and its executors (the models themselves are
shared, ``pipeline/shared_models.py``; before they were, about 300 MB for a two-turn session).
CPython runs that pass rarely, and over every object in the heap: with torch, spaCy and Whisper
loaded, about 500,000 objects and 300 ms on this machine. Left alone, a server grew
by gigabytes between passes (15 GB at the peak of a 69-session evaluation).

So, as long-running Python services do: at start-up, once the models are loaded, the heap is
collected and frozen (``gc.freeze``: start-up objects are never garbage, the collector stops
walking them), and each ended session is collected right away, which then costs ~25 ms.

What the session freed then goes back to the operating system (glibc's ``malloc_trim``, on a
worker thread): glibc otherwise keeps freed heap pages for reuse, and the soak
(``python -m tools.soak``) saw the server hold 200-300 MB of them between sessions.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable
from functools import lru_cache

log = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Collect, then freeze what start-up loaded. Only the first call does anything: a later
    call could freeze a running session's objects, which would then never be freed."""
    if gc.get_freeze_count():
        return
    gc.collect()
    gc.freeze()
    log.debug("start-up heap frozen: %d objects", gc.get_freeze_count())


def collect_ended_session() -> None:
    """Free an ended session's models soon: on the event loop's next turn, once the
    coroutines that held the session have returned."""
    asyncio.get_running_loop().call_soon(_collect)


def _collect() -> None:
    started = time.perf_counter()
    freed = gc.collect()
    log.debug("ended session collected: %d objects, %.0f ms", freed, (time.perf_counter() - started) * 1000)
    asyncio.get_running_loop().run_in_executor(None, release_free_heap)


def release_free_heap() -> bool:
    """Give the heap's free pages back to the operating system; False where libc has no
    ``malloc_trim`` (not glibc), which only means the memory stays reserved for reuse."""
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once per process (None where there is none)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
