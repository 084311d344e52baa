"""Shared fixtures: settings for tests, and patient speech synthesised with the offline Piper voice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from configs.settings import Settings, hub_offline_environment, load_settings
from media.synth import synthesize

hub_offline_environment()


@pytest.fixture
def speak(tmp_path: Path) -> Callable[..., Path]:
    """``speak("text", name="turn1")`` -> a WAV of Piper saying it."""
    counter = iter(range(1000))

    def _speak(text: str, name: str | None = None, **pads: float) -> Path:
        return synthesize(text, tmp_path / f"{name or f'speech{next(counter)}'}.wav", **pads)

    return _speak


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Development settings that write only inside the test's directory (no index, no accounts)."""
    return load_settings(
        escalations_dir=tmp_path / "escalations",
        vector_store_dir=tmp_path / "chroma",
        clinician={"accounts_file": tmp_path / "clinicians.json", "audit_log": tmp_path / "audit.log"},
    )
