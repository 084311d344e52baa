"""Patient recordings: any rate, mono or stereo; unusable files fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from media.audio_files import AudioInputError, read_mono_int16, speech_bounds, write_stereo


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_rate_and_stereo_becomes_16k_mono(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "turn.wav"
    sf.write(path, np.stack([tone(1.0, rate), tone(1.0, rate)], axis=1), rate)
    samples = read_mono_int16(path, 16000)
    assert samples.dtype == np.int16
    assert abs(samples.size - 16000) <= 2
    assert np.abs(samples).max() > 5000


def test_speech_bounds_find_the_sound_inside_silence() -> None:
    silence = np.zeros(8000, dtype=np.int16)
    sound = (tone(1.0, 16000) * 32767).astype(np.int16)
    start, end = speech_bounds(np.concatenate([silence, sound, silence]), 16000)
    assert start == pytest.approx(0.5, abs=0.03)
    assert end == pytest.approx(1.5, abs=0.03)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"", "the file is empty"), (b"this is not audio", "not a readable audio file")],
)
def test_unusable_inputs_say_why(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "turn.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioInputError, match=message):
        read_mono_int16(path, 16000)


def test_conversation_recording_puts_patient_left_and_agent_right(tmp_path: Path) -> None:
    left = np.full(100, 1000, dtype=np.int16)
    right = np.full(50, -1000, dtype=np.int16)
    write_stereo(tmp_path / "c.wav", left, right, 16000)
    data, rate = sf.read(tmp_path / "c.wav", dtype="int16")
    assert rate == 16000 and data.shape == (100, 2)
    assert (data[:, 0] == 1000).all() and (data[:50, 1] == -1000).all() and (data[50:, 1] == 0).all()
