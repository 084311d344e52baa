"""The on-disk vector store: a persistent ChromaDB with two collections.

- ``scin_text``: one entry per labelled case (id = case_id), the case document embedded by MiniLM.
- ``scin_images``: one entry per image (id = ``case_id/name``), embedded by SigLIP.

Both use cosine distance. Each entry's metadata carries the case id and its weighted labels
(JSON), so a hit is a ``RetrievedCase`` without another lookup. Each collection records the
encoder that filled it: vectors of another model are never mixed in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

TEXT = "scin_text"
IMAGES = "scin_images"
Kind = Literal["text", "image"]
COLLECTIONS: dict[Kind, str] = {"text": TEXT, "image": IMAGES}


class StoreError(RuntimeError):
    """The store cannot be used as asked; the message is one line that says the fix."""


@dataclass(frozen=True)
class Hit:
    entry_id: str
    case_id: str
    labels: dict[str, float]
    distance: float


def store_exists(path: Path) -> bool:
    return (path / "chroma.sqlite3").exists()


class CaseStore:
    """ChromaDB at ``path`` (created on first write)."""

    def __init__(self, path: Path) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._client = chromadb.PersistentClient(
            path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
        )
        self._collections: dict[Kind, Any] = {}

    def _existing(self, kind: Kind) -> Any | None:
        if kind not in self._collections:
            names = {c if isinstance(c, str) else c.name for c in self._client.list_collections()}
            if COLLECTIONS[kind] not in names:
                return None
            self._collections[kind] = self._client.get_collection(COLLECTIONS[kind], embedding_function=None)
        return self._collections[kind]

    def collection(self, kind: Kind, *, encoder: str, dimension: int) -> Any:
        """The collection for ``kind``, created for ``encoder`` if missing; refuses another encoder's."""
        existing = self._existing(kind)
        if existing is None:
            self._collections[kind] = self._client.create_collection(
                COLLECTIONS[kind],
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"encoder": encoder, "dimension": dimension},
                embedding_function=None,
            )
            return self._collections[kind]
        built_with = (existing.metadata or {}).get("encoder")
        if built_with != encoder or (existing.metadata or {}).get("dimension") != dimension:
            raise StoreError(
                f"the {kind} index at {self.path} was built with {built_with}, not {encoder}: "
                "rebuild it with `python -m rag.index --rebuild`"
            )
        return existing

    def encoder(self, kind: Kind) -> str | None:
        existing = self._existing(kind)
        return None if existing is None else (existing.metadata or {}).get("encoder")

    def count(self, kind: Kind) -> int:
        existing = self._existing(kind)
        return 0 if existing is None else int(existing.count())

    def ids(self, kind: Kind) -> set[str]:
        existing = self._existing(kind)
        return set() if existing is None else set(existing.get(include=[])["ids"])

    def drop(self, kind: Kind) -> None:
        if self._existing(kind) is not None:
            self._client.delete_collection(COLLECTIONS[kind])
        self._collections.pop(kind, None)

    def add(
        self,
        collection: Any,
        ids: Sequence[str],
        vectors: np.ndarray,
        case_ids: Sequence[str],
        labels: Sequence[dict[str, float]],
        documents: Sequence[str] | None = None,
        extra: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        metadatas = [
            {"case_id": case_id, "labels": json.dumps(label), **(extra[i] if extra else {})}
            for i, (case_id, label) in enumerate(zip(case_ids, labels, strict=True))
        ]
        collection.upsert(
            ids=list(ids),
            embeddings=np.asarray(vectors, dtype=np.float32),
            metadatas=metadatas,
            documents=list(documents) if documents is not None else None,
        )

    def query(self, kind: Kind, vector: np.ndarray, n: int) -> list[Hit]:
        """The ``n`` nearest entries to ``vector`` (fewer when the collection is smaller)."""
        existing = self._existing(kind)
        if existing is None or n <= 0:
            return []
        result = existing.query(  # fewer than n entries: chroma returns what there is
            query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
            n_results=n,
            include=["metadatas", "distances"],
        )
        if not result["ids"] or not result["ids"][0]:
            return []
        hits = []
        for entry_id, meta, distance in zip(
            result["ids"][0], result["metadatas"][0], result["distances"][0], strict=True
        ):
            meta = meta or {}
            labels = {str(k): float(v) for k, v in json.loads(str(meta.get("labels") or "{}")).items()}
            hits.append(Hit(entry_id, str(meta.get("case_id", entry_id)), labels, max(0.0, float(distance))))
        return hits

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
