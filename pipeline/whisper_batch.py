"""One worker at a time on a model; the passes that queue meanwhile are run together.

Sessions call the transcriber from threads (``asyncio.to_thread``, from the server's event loop or
from a replay's own), so the gathering is thread-based and tied to no event loop. There is no
gathering thread either: the caller that finds the model idle becomes the worker. It runs the
oldest waiting pass together with the waiting passes of the same kind (the same ``key``), up to a
cap, hands each caller its own result, and goes on until its own pass is done; then the next caller
still waiting takes over. Callers wait on a condition variable (no polling), and a batch that
raises hands its exception to every caller in it, so no caller is left waiting and each session's
fail-safe sees the failure.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Request = TypeVar("Request")
Result = TypeVar("Result")


@dataclass
class BatchStats:
    """What the queue has run: an operator (or a test) sees whether passes really were batched."""

    passes: int = 0
    batches: int = 0
    largest: int = 0  # the most passes run as one batch
    last: int = 0  # the size of the latest batch


@dataclass(eq=False)
class _Waiting(Generic[Key, Request, Result]):
    key: Key | None
    request: Request
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set with done, by the batch that ran it


class PassQueue(Generic[Key, Request, Result]):
    """Runs ``run_batch(key, requests)`` for waiting requests of one key at a time, in arrival order.

    ``run_batch`` returns one result per request, in order. A ``None`` key is never batched (a pass
    that must run alone); ``max_batch=1`` turns batching off (every pass alone, first come first served).
    """

    def __init__(
        self, run_batch: Callable[[Key | None, list[Request]], list[Result]], max_batch: int
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max(1, max_batch)
        self.stats = BatchStats()
        self._waiting: deque[_Waiting[Key, Request, Result]] = deque()
        self._changed = threading.Condition()
        self._busy = False  # a caller is running batches on the model

    @property
    def waiting(self) -> int:
        """Passes queued and not yet taken by a worker."""
        with self._changed:
            return len(self._waiting)

    def run(self, key: Key | None, request: Request) -> Result:
        """The result of ``request``, run alone or with others of its ``key``; blocks until then."""
        item: _Waiting[Key, Request, Result] = _Waiting(key, request)
        with self._changed:
            self._waiting.append(item)
            while self._busy and not item.done:
                self._changed.wait()
            if item.done:
                return item.outcome()
            self._busy = True
        try:
            while not item.done:
                self._run_one_batch()
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()
        return item.outcome()

    def _run_one_batch(self) -> None:
        with self._changed:
            batch = self._take()
        try:
            results = self.run_batch(batch[0].key, [item.request for item in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} passes gave {len(results)} results")
        except BaseException as exc:  # every caller of the batch gets it, then the worker's own raise
            with self._changed:
                for item in batch:
                    item.error, item.done = exc, True
                self._changed.notify_all()
            if not isinstance(exc, Exception):
                raise
            return
        with self._changed:
            for item, result in zip(batch, results, strict=True):
                item.result, item.done = result, True
            self._changed.notify_all()

    def _take(self) -> list[_Waiting[Key, Request, Result]]:
        """The oldest waiting pass and, unless it must run alone, the waiting passes of its key."""
        first = self._waiting.popleft()
        batch = [first]
        if first.key is not None:
            for item in list(self._waiting):
                if len(batch) >= self.max_batch:
                    break
                if item.key == first.key:
                    self._waiting.remove(item)
                    batch.append(item)
        self.stats.passes += len(batch)
        self.stats.batches += 1
        self.stats.largest = max(self.stats.largest, len(batch))
        self.stats.last = len(batch)
        return batch
