"""faster-whisper, loaded once per process from the local model directory."""

from __future__ import annotations

import asyncio
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel


class Transcriber:
    """Turns 16 kHz int16 speech into text. Thread-safe; one model shared by all sessions."""

    sample_rate = 16000

    def __init__(self, model_dir: Path, compute_type: str = "int8", threads: int = 2) -> None:
        if not (model_dir / "model.bin").exists():
            raise FileNotFoundError(
                f"{model_dir}/model.bin is missing: run scripts/setup.sh to assemble the models"
            )
        self.model = WhisperModel(
            str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads
        )
        # CTranslate2 runs one call at a time well on 2 cores; queue the rest.
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray, prompt: str = "") -> str:
        audio = samples.astype(np.float32) / 32768.0
        with self._lock:
            segments, _info = self.model.transcribe(
                audio,
                language="en",
                beam_size=1,
                initial_prompt=prompt or None,
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,
            )
            return " ".join(s.text.strip() for s in segments).strip()

    def warm_up(self) -> None:
        """The first call is slow (allocations); pay it before the first patient does."""
        self.transcribe(np.zeros(self.sample_rate, dtype=np.int16))

    async def transcribe_async(self, samples: np.ndarray, prompt: str = "") -> str:
        return await asyncio.to_thread(self.transcribe, samples, prompt)


@lru_cache(maxsize=4)
def shared_transcriber(model_dir: Path, compute_type: str = "int8", threads: int = 2) -> Transcriber:
    """The process-wide transcriber for a model directory."""
    return Transcriber(model_dir, compute_type, threads)
