"""Acoustic conditions for replayed patient speech: clean, pink noise at 15 dB SNR, and a telephone line.

- clean: the samples unchanged.
- noise: pink (1/f) noise, drawn deterministically from ``seed`` with numpy, mixed at ``NOISE_SNR_DB``
  relative to the speech power over its active (non-silent) 20 ms frames; the mix is scaled down, never
  clipped, when it would overflow int16.
- phone: band-limited to 300-3400 Hz (elliptic band-pass: 0.5 dB ripple, -11 dB at 3.6 kHz, -34 dB at
  4 kHz, -60 dB beyond, causal like a real line), resampled to 8 kHz (``media.resample``), then
  encoded and decoded as G.711 mu-law by the phone bridge's own codec (``media.sip.g711``), so the
  evaluation hears what a caller's line would carry; returned at 8 kHz.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import ellip, sosfilt

from media.resample import resample
from media.sip.g711 import PCMU

NOISE_SNR_DB = 15.0
PHONE_RATE = 8000
PHONE_BAND_HZ = (300.0, 3400.0)
ACTIVE_BELOW_PEAK_DB = 40.0  # a 20 ms frame is active within this many dB of the loudest frame
ACTIVE_FLOOR_DBFS = -70.0  # ... and above this absolute level


class Condition(StrEnum):
    CLEAN = "clean"
    NOISE = "noise"
    PHONE = "phone"


def active_frames(samples: np.ndarray, rate: int) -> np.ndarray:
    """Boolean mask over samples: True inside the active (non-silent) 20 ms frames."""
    window = max(1, rate // 50)
    count = -(-samples.size // window)
    padded = np.zeros(count * window)
    padded[: samples.size] = samples.astype(np.float64) / 32768.0
    power = np.mean(padded.reshape(count, window) ** 2, axis=1) + 1e-20
    level = 10 * np.log10(power)
    active = (level > level.max() - ACTIVE_BELOW_PEAK_DB) & (level > ACTIVE_FLOOR_DBFS)
    return np.repeat(active, window)[: samples.size]


def active_power(samples: np.ndarray, rate: int, mask: np.ndarray | None = None) -> float:
    """Mean power (in int16 units squared) over the active frames (or over ``mask``)."""
    mask = active_frames(samples, rate) if mask is None else mask
    if not mask.any():
        raise ValueError("no active speech to measure: the samples are silent")
    return float(np.mean(samples[mask].astype(np.float64) ** 2))


def pink_noise(size: int, seed: int) -> np.ndarray:
    """``size`` samples of pink (1/f power) noise with unit variance, the same for the same seed."""
    if size == 0:
        return np.zeros(0)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(size))
    frequency = np.arange(spectrum.size, dtype=np.float64)
    frequency[0] = 1.0
    spectrum /= np.sqrt(frequency)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=size)
    return noise / noise.std()


def _add_noise(samples: np.ndarray, rate: int, seed: int) -> np.ndarray:
    speech = samples.astype(np.float64)
    mask = active_frames(samples, rate)
    noise = pink_noise(samples.size, seed)
    target = active_power(samples, rate, mask) / 10 ** (NOISE_SNR_DB / 10)
    noise *= np.sqrt(target / np.mean(noise[mask] ** 2))
    mix = speech + noise
    peak = np.abs(mix).max()
    if peak > 32767:
        mix *= 32767 / peak
    return np.round(mix).astype(np.int16)


def mulaw_roundtrip(samples: np.ndarray) -> np.ndarray:
    """int16 samples through G.711 mu-law (PCMU): 8 bits a sample and back."""
    return PCMU.decode(PCMU.encode(samples))


def _phone(samples: np.ndarray, rate: int) -> np.ndarray:
    audio = samples.astype(np.float64) / 32768.0
    low, high = PHONE_BAND_HZ
    if rate > 2 * high:
        sos = ellip(6, 0.5, 60, [low, high], btype="bandpass", fs=rate, output="sos")
        audio = sosfilt(sos, audio)
    return mulaw_roundtrip(resample(audio, rate, PHONE_RATE))


def apply_condition(
    samples: np.ndarray, rate: int, condition: Condition | str, *, seed: int
) -> tuple[np.ndarray, int]:
    """Mono int16 ``samples`` at ``rate`` under ``condition``: (samples, rate); phone returns 8 kHz."""
    condition = Condition(condition)
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError(f"expected mono int16 samples, got {samples.dtype} with shape {samples.shape}")
    if condition is Condition.CLEAN:
        return samples, rate
    if condition is Condition.NOISE:
        return _add_noise(samples, rate, seed), rate
    return _phone(samples, rate), PHONE_RATE


def condition_wav(in_path: Path, out_path: Path, condition: Condition | str, seed: int) -> Path:
    """A 16-bit mono WAV under ``condition`` (the first channel of a multi-channel file)."""
    samples, rate = sf.read(in_path, dtype="int16", always_2d=True)
    out, out_rate = apply_condition(np.ascontiguousarray(samples[:, 0]), rate, condition, seed=seed)
    sf.write(out_path, out, out_rate, subtype="PCM_16")
    return out_path
