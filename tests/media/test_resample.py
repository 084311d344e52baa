"""Resampling for the phone line: soxr quality, 5 ms of delay, no drift over chunk boundaries."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from media.resample import LOOKAHEAD_S, ChunkResampler


def band_limited_noise(rate: int, seconds: float, top_hz: int) -> np.ndarray:
    noise = np.random.default_rng(7).standard_normal(int(rate * seconds)).astype(np.float32)
    shaped = soxr.resample(soxr.resample(noise, rate, 2 * top_hz), 2 * top_hz, rate)
    return (shaped / np.max(np.abs(shaped)) * 12000).astype(np.int16)


@pytest.mark.parametrize(("in_rate", "out_rate", "top_hz"), [(16000, 8000, 3400), (8000, 16000, 3400)])
def test_chunked_equals_whole_file_soxr_within_g711_noise(in_rate: int, out_rate: int, top_hz: int) -> None:
    signal = band_limited_noise(in_rate, 2.0, top_hz)
    resampler = ChunkResampler(in_rate, out_rate)
    chunk = in_rate // 50
    out = np.concatenate([resampler.process(signal[i : i + chunk]) for i in range(0, signal.size, chunk)])
    reference = soxr.resample(signal.astype(np.float32) / 32768, in_rate, out_rate, "HQ") * 32767
    assert abs(out.size - (signal.size * out_rate // in_rate - int(LOOKAHEAD_S * out_rate))) <= 1
    error = reference[200 : out.size] - out[200:].astype(np.float64)
    snr = 10 * np.log10(np.mean(reference[200 : out.size] ** 2) / np.mean(error**2))
    assert snr > 50  # G.711 is about 38 dB: the chunking costs nothing audible


def test_downsampling_filters_what_the_phone_cannot_carry() -> None:
    t = np.arange(16000) / 16000
    tone = (np.sin(2 * np.pi * 6000 * t) * 10000).astype(np.int16)  # above 4 kHz: must not alias
    resampler = ChunkResampler(16000, 8000)
    out = np.concatenate([resampler.process(tone[i : i + 320]) for i in range(0, tone.size, 320)])
    assert np.sqrt(np.mean(out[400:].astype(np.float64) ** 2)) < 100  # decimation would leave a 2 kHz alias


def test_reset_forgets_the_past() -> None:
    resampler = ChunkResampler(16000, 8000)
    resampler.process(np.full(320, 20000, dtype=np.int16))
    resampler.reset()
    assert not np.any(resampler.process(np.zeros(640, dtype=np.int16)))
