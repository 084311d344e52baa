"""Similar SCIN cases for the conversation: the library API the pipeline uses.

``Retriever.search`` embeds the query text with MiniLM and the photo (if any) with SigLIP,
searches both collections and merges the hits. Distances of the two indexes live in different
embedding spaces, so the lists are merged by rank (image and text hits alternate, best first,
each case once) and every result says which index matched it and at what distance.

Nothing here raises into the pipeline: without an index the results are empty, without SigLIP
weights the search is text-only, and any failure is logged (without patient text) and yields
what the other index found.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Protocol

import numpy as np

from agent.backends.base import RetrievedCase
from configs.settings import Settings
from rag.image_encoder import ImageEncoder, image_model_problem, siglip_dir
from rag.store import CaseStore, Hit, Kind, store_exists
from rag.text import query_from_facts
from rag.text_encoder import TextEncoder, text_model_problem

__all__ = ["CaseSearch", "Retriever", "merge_hits", "query_from_facts"]
log = logging.getLogger(__name__)


class CaseSearch(Protocol):
    def search(
        self, text: str, image_jpeg: bytes | None = None, k: int | None = None
    ) -> list[RetrievedCase]: ...


def _best_per_case(hits: list[Hit]) -> list[Hit]:
    best: dict[str, Hit] = {}
    for hit in hits:
        if hit.case_id not in best or hit.distance < best[hit.case_id].distance:
            best[hit.case_id] = hit
    return sorted(best.values(), key=lambda hit: hit.distance)


def merge_hits(image_hits: list[Hit], text_hits: list[Hit], k: int) -> list[RetrievedCase]:
    """Alternate image and text hits by rank (image first), each case once, at most ``k``."""
    ranked: list[tuple[Hit, Kind]] = []
    images, texts = _best_per_case(image_hits), _best_per_case(text_hits)
    for i in range(max(len(images), len(texts))):
        ranked += [(images[i], "image")] if i < len(images) else []
        ranked += [(texts[i], "text")] if i < len(texts) else []
    merged: list[RetrievedCase] = []
    seen: set[str] = set()
    for hit, kind in ranked:
        if hit.case_id in seen:
            continue
        seen.add(hit.case_id)
        merged.append(RetrievedCase(hit.case_id, dict(hit.labels), round(hit.distance, 6), kind))
        if len(merged) == k:
            break
    return merged


class Retriever:
    """Searches the on-disk index; models and store are opened on first use, once."""

    def __init__(self, settings: Settings, *, k: int | None = None) -> None:
        self._db = settings.path(settings.vector_store_dir)
        self._text_dir = settings.path(settings.embedding.text_model_dir)
        self._image_dir = siglip_dir(settings)
        self._device = settings.embedding.device
        self.k = k or settings.vector_store_top_k
        # One lock per resource: a text search never waits for SigLIP to load.
        self._locks = {what: threading.Lock() for what in ("store", "text", "image")}
        self._store: CaseStore | None = None
        self._text: TextEncoder | None = None
        self._image: ImageEncoder | None = None
        self._failed: dict[str, str] = {}  # what could not be loaded, and why
        # A patient's facts often do not change between turns: the same query is not encoded twice.
        self._text_vector = functools.lru_cache(maxsize=256)(self._encode_text)

    @classmethod
    def from_settings(cls, settings: Settings) -> Retriever:
        return cls(settings)

    # --- lazy resources -------------------------------------------------------------------

    def _load(self, what: str) -> Any:
        with self._locks[what]:
            if what in self._failed:
                return None
            try:
                if what == "store" and self._store is None and store_exists(self._db):
                    self._store = CaseStore(self._db)
                elif what == "text" and self._text is None:
                    self._text = TextEncoder(self._text_dir, self._device)
                elif what == "image" and self._image is None:
                    self._image = ImageEncoder(self._image_dir, self._device)
            except Exception as exc:  # noqa: BLE001 - a missing model degrades the search, never breaks it
                self._failed[what] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                log.warning("retrieval: %s unavailable (%s)", what, type(exc).__name__)
            return {"store": self._store, "text": self._text, "image": self._image}[what]

    def warm(self) -> None:
        """Load the store and models now rather than on the first search."""
        self._load("store")
        self._load("text")
        if image_model_problem(self._image_dir) is None:
            self._load("image")

    # --- search ---------------------------------------------------------------------------

    def _encode_text(self, text: str) -> np.ndarray:
        encoder = self._load("text")
        if encoder is None:
            raise RuntimeError("the text model is unavailable")
        return encoder.encode([text], threads=1)[0]

    def _hits(self, kind: Kind, store: CaseStore, query: Any, k: int) -> list[Hit]:
        try:
            if kind == "text":
                encoder = self._load("text")
                if encoder is None or store.encoder("text") != encoder.name:
                    return []
                return store.query("text", self._text_vector(query), k)
            if store.encoder("image") is None or image_model_problem(self._image_dir) is not None:
                return []
            encoder = self._load("image")
            if encoder is None or store.encoder("image") != encoder.name:
                return []
            return store.query("image", encoder.encode_bytes(query)[0], k * 3)  # up to 3 photos a case
        except Exception as exc:  # noqa: BLE001 - retrieval must never break the conversation
            log.warning("retrieval: %s search failed (%s)", kind, type(exc).__name__)
            return []

    def search(self, text: str, image_jpeg: bytes | None = None, k: int | None = None) -> list[RetrievedCase]:
        """The ``k`` most similar labelled cases to the query text and/or photo ([] when none)."""
        k = k or self.k
        try:
            store = self._load("store")
            if store is None:
                return []
            text_hits = self._hits("text", store, text, k) if text and text.strip() else []
            image_hits = self._hits("image", store, image_jpeg, k) if image_jpeg else []
            return merge_hits(image_hits, text_hits, k)
        except Exception as exc:  # noqa: BLE001
            log.warning("retrieval failed (%s)", type(exc).__name__)
            return []

    # --- health ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For /health: index "ready"|"missing", counts, and each model "ready" or "missing: <why>"."""
        status: dict[str, Any] = {"index": "missing", "cases": 0, "images": 0}
        try:
            store = self._load("store")
            if store is not None:
                status["cases"], status["images"] = store.count("text"), store.count("image")
                status["index"] = "ready" if status["cases"] else "missing"
        except Exception as exc:  # noqa: BLE001
            status["index"] = f"error: {type(exc).__name__}"
        if "store" in self._failed:
            status["index"] = f"error: {self._failed['store']}"
        text_problem = text_model_problem(self._text_dir) or self._failed.get("text")
        image_problem = image_model_problem(self._image_dir) or self._failed.get("image")
        status["text_model"] = f"missing: {text_problem}" if text_problem else "ready"
        status["image_model"] = f"missing: {image_problem}" if image_problem else "ready"
        return status
