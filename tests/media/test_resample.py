"""Resampling: whole recordings keep length and level; live chunks: soxr quality, 5 ms of delay, no drift."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from media.resample import LOOKAHEAD_S, ChunkResampler, resample

RECORDING_RATES = [(44100, 16000), (22050, 8000), (8000, 16000), (24000, 48000)]
LIVE_RATES = [(8000, 16000), (16000, 8000), (24000, 48000), (48000, 8000)]  # phone line, room


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


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


@pytest.mark.parametrize(("in_rate", "out_rate"), RECORDING_RATES)
def test_a_recording_keeps_its_length_and_level(in_rate: int, out_rate: int) -> None:
    tone = (np.sin(2 * np.pi * 440 * np.arange(in_rate) / in_rate) * 16000).astype(np.int16)
    out = resample(tone, in_rate, out_rate)
    assert out.dtype == np.int16 and out.size == out_rate  # one second stays one second
    assert abs(20 * np.log10(rms(out[100:-100]) / rms(tone))) < 0.01  # not louder, not quieter


def test_a_float_recording_comes_out_as_int16_at_its_level() -> None:
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)).astype(np.float32)
    for out in (resample(tone, 22050, 16000), resample(tone, 16000, 16000)):
        assert out.dtype == np.int16 and np.abs(out).max() == pytest.approx(16384, abs=100)


@pytest.mark.parametrize(("in_rate", "out_rate"), LIVE_RATES)
def test_live_chunks_come_out_at_once(in_rate: int, out_rate: int) -> None:
    """A listener waits 5 ms for each 20 ms chunk; soxr's own stream would hold back 40-160 ms."""
    resampler = ChunkResampler(in_rate, out_rate)
    chunk = np.zeros(in_rate // 50, dtype=np.int16)
    heard = 0
    for n in range(1, 11):
        heard += resampler.process(chunk).size
        assert n * chunk.size * out_rate // in_rate - heard <= LOOKAHEAD_S * out_rate + 1
