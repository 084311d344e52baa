"""Reading patient recordings and writing conversation recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from media.resample import resample

resample_int16 = resample  # the name the replay, the phone bench and some tests import


class AudioInputError(ValueError):
    """A file that cannot be used as patient audio; the message is one line."""


def read_mono_int16(path: Path, sample_rate: int) -> np.ndarray:
    """Any WAV (any rate, mono or stereo) as mono int16 at ``sample_rate``."""
    if not path.exists():
        raise AudioInputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioInputError(f"{path}: the file is empty")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioInputError(f"{path}: not a readable audio file ({exc})") from None
    if data.shape[0] == 0:
        raise AudioInputError(f"{path}: the file holds no audio samples")
    return resample(data.mean(axis=1), rate, sample_rate)


def speech_bounds(samples: np.ndarray, sample_rate: int, threshold_db: float = -40.0) -> tuple[float, float]:
    """Seconds of the first and last 20 ms window louder than ``threshold_db`` (dBFS)."""
    window = max(1, sample_rate // 50)
    usable = samples[: samples.size - samples.size % window].astype(np.float32) / 32768.0
    if usable.size == 0:
        return 0.0, 0.0
    rms = np.sqrt(np.mean(usable.reshape(-1, window) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms) > threshold_db)
    if loud.size == 0:
        return 0.0, 0.0
    return loud[0] * window / sample_rate, (loud[-1] + 1) * window / sample_rate


def write_stereo(path: Path, left: np.ndarray, right: np.ndarray, sample_rate: int) -> None:
    """Two int16 tracks side by side (the shorter padded with silence)."""
    length = max(left.size, right.size)
    stereo = np.zeros((length, 2), dtype=np.int16)
    stereo[: left.size, 0] = left
    stereo[: right.size, 1] = right
    sf.write(str(path), stereo, sample_rate, subtype="PCM_16")
