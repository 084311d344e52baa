"""The shared Whisper: scores what it writes, and its warm-up really runs the model."""

from __future__ import annotations

import numpy as np
import pytest

from configs.settings import Settings
from media.audio_files import read_mono_int16
from pipeline.session import INPUT_RATE, whisper_dir
from pipeline.transcriber import Transcriber

pytestmark = pytest.mark.slow


def test_the_warm_up_runs_the_model_rather_than_returning_early(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    transcriber = Transcriber(whisper_dir(settings))
    windows: list[int] = []
    real_pass = transcriber._transcribe_short
    monkeypatch.setattr(
        transcriber,
        "_transcribe_short",
        lambda audio, prompt, window: windows.append(window) or real_pass(audio, prompt, window),
    )
    transcriber.warm_up()
    # The model ran (encoder and decoder) once per short window: the first patient pays no first-call cost.
    assert windows == [10, 20]


def test_a_clear_sentence_is_written_with_confidence(settings: Settings, speak) -> None:  # noqa: ANN001
    samples = read_mono_int16(speak("I have an itchy rash on my arm."), INPUT_RATE)
    heard = Transcriber(whisper_dir(settings)).transcribe_scored(samples)
    assert "rash" in heard.text.lower()
    assert heard.avg_logprob > -0.8  # above the "unsure" line of agent/clarify.py
    assert Transcriber(whisper_dir(settings)).transcribe_scored(np.zeros(16000, dtype=np.int16)).text == ""
