"""Text embeddings with the offline all-MiniLM-L6-v2 (``models/minilm``, 384 dimensions).

A query is one short sentence: encoding it on one thread takes about 15 ms on this CPU and
stays there when the voice pipeline keeps the other core busy, whereas torch's default two
threads wait on each other under load (p95 above 500 ms measured). So ``encode(threads=1)``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_THREADS_LOCK = threading.Lock()


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run torch's intra-op work on ``count`` threads for the block (None: unchanged)."""
    if count is None:
        yield
        return
    import torch

    with _THREADS_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def text_model_problem(model_dir: Path) -> str | None:
    """Why the MiniLM directory cannot be used, or None when it can."""
    if not (model_dir / "modules.json").exists() or not (model_dir / "config.json").exists():
        return f"no sentence-transformers model in {model_dir} (run `bash scripts/setup.sh`)"
    return None


class TextEncoder:
    """Sentence embeddings, L2-normalised (cosine distance = 1 - dot product)."""

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        problem = text_model_problem(model_dir)
        if problem:
            raise FileNotFoundError(problem)
        from sentence_transformers import SentenceTransformer

        self.name = model_dir.name
        self._model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension() or 384)

    def encode(self, texts: list[str], *, batch_size: int = 64, threads: int | None = None) -> np.ndarray:
        """One row per text, float32. ``threads=1`` for a single query (see the module's note)."""
        with torch_threads(threads):
            vectors = self._model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
