"""Acoustic conditions: clean is identity, noise is pink at 15 dB SNR, phone is 8 kHz band-limited mu-law."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from media.conditions import (
    Condition,
    active_frames,
    active_power,
    apply_condition,
    condition_wav,
    mulaw_roundtrip,
    pink_noise,
)
from media.sip.g711 import PCMU

RATE = 22050


def speechlike(seconds: float = 3.0, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Bursts of harmonics and hiss (syllables) between pauses, with silence around: full-band like speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 60) if 140 * k < rate / 2)
    hiss = rng.standard_normal(t.size) * 0.3
    envelope = (np.sin(2 * np.pi * 3 * t) > 0.2).astype(float)
    audio = (voiced + hiss) * envelope
    audio = 0.5 * audio / np.abs(audio).max()
    silence = np.zeros(int(0.5 * rate))
    return np.round(np.concatenate([silence, audio, silence]) * 32767).astype(np.int16)


def band_energy(samples: np.ndarray, rate: int, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    frequency = np.fft.rfftfreq(samples.size, 1 / rate)
    return float(spectrum[(frequency >= low) & (frequency < high)].sum())


def measured_snr_db(speech: np.ndarray, mix: np.ndarray, rate: int) -> float:
    """SNR of ``mix`` = g * (speech + noise): g by projection, noise the rest, over speech's active part."""
    clean, noisy = speech.astype(np.float64), mix.astype(np.float64)
    gain = float(np.dot(noisy, clean) / np.dot(clean, clean))
    mask = active_frames(speech, rate)
    noise = noisy - gain * clean
    return 10 * np.log10(gain**2 * active_power(speech, rate, mask) / np.mean(noise[mask] ** 2))


def test_clean_is_identity() -> None:
    speech = speechlike()
    out, rate = apply_condition(speech, RATE, Condition.CLEAN, seed=1)
    assert rate == RATE
    np.testing.assert_array_equal(out, speech)


@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_noise_is_15_db_below_the_speech_and_never_clips(seed: int) -> None:
    speech = speechlike()
    mix, rate = apply_condition(speech, RATE, Condition.NOISE, seed=seed)
    assert rate == RATE and mix.dtype == np.int16 and mix.size == speech.size
    assert measured_snr_db(speech, mix, RATE) == pytest.approx(15.0, abs=1.0)
    assert np.abs(mix.astype(np.int32)).max() <= 32767


def test_loud_speech_is_scaled_down_not_clipped() -> None:
    speech = speechlike()
    loud = np.round(speech * (32767 / np.abs(speech).max())).astype(np.int16)
    mix, _ = apply_condition(loud, RATE, "noise", seed=3)
    assert np.abs(mix.astype(np.int32)).max() <= 32767
    assert (np.abs(mix.astype(np.int32)) >= 32767).sum() <= 1  # only the scaled peak reaches full scale
    assert measured_snr_db(loud, mix, RATE) == pytest.approx(15.0, abs=1.0)


def test_noise_is_deterministic_for_a_seed() -> None:
    speech = speechlike()
    first, _ = apply_condition(speech, RATE, Condition.NOISE, seed=42)
    again, _ = apply_condition(speech, RATE, Condition.NOISE, seed=42)
    other, _ = apply_condition(speech, RATE, Condition.NOISE, seed=43)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_pink_noise_has_equal_power_per_octave() -> None:
    noise = pink_noise(10 * RATE, seed=5)
    octaves = [band_energy(noise, RATE, f, 2 * f) for f in (125, 250, 500, 1000, 2000, 4000)]
    levels = 10 * np.log10(np.array(octaves) / np.mean(octaves))
    assert np.abs(levels).max() < 1.0  # white noise would rise 3 dB an octave
    np.testing.assert_array_equal(noise, pink_noise(10 * RATE, seed=5))


def test_silence_has_no_speech_power_to_measure() -> None:
    with pytest.raises(ValueError, match="silent"):
        apply_condition(np.zeros(RATE, dtype=np.int16), RATE, Condition.NOISE, seed=0)


def test_phone_is_8_khz_and_band_limited() -> None:
    speech = speechlike()
    out, rate = apply_condition(speech, RATE, Condition.PHONE, seed=0)
    assert rate == 8000 and out.dtype == np.int16
    assert out.size == pytest.approx(speech.size * 8000 / RATE, abs=2)
    high_before = band_energy(speech, RATE, 3600, RATE / 2) / band_energy(speech, RATE, 0, RATE / 2)
    high_after = band_energy(out, rate, 3600, rate / 2) / band_energy(out, rate, 0, rate / 2)
    low_after = band_energy(out, rate, 0, 200) / band_energy(out, rate, 0, rate / 2)
    assert high_before > 0.05  # the test signal does have energy up there ...
    assert high_after < 1e-3  # ... and the line removes it (-30 dB and more)
    assert low_after < 0.02
    assert band_energy(out, rate, 300, 3400) / band_energy(out, rate, 0, rate / 2) > 0.9


def test_phone_audio_is_what_the_phone_bridge_sends() -> None:
    out, _ = apply_condition(speechlike(), RATE, Condition.PHONE, seed=0)
    line_levels = PCMU.decode(bytes(range(256)))  # the 256 levels the SIP bridge's mu-law can carry
    assert np.isin(out, line_levels).all()
    np.testing.assert_array_equal(PCMU.decode(PCMU.encode(out)), out)


def test_mulaw_roundtrip_error_is_small() -> None:
    ramp = np.linspace(-32768, 32767, 20001).round().astype(np.int16)
    decoded = mulaw_roundtrip(ramp)
    assert decoded.size == ramp.size and decoded.dtype == np.int16
    error = np.abs(decoded.astype(np.int32) - ramp.astype(np.int32))
    # G.711 quantises in 8 segments: the step grows with the level, about 1/16 of it at most.
    assert np.all(error <= np.abs(ramp.astype(np.int32)) / 16 + 8)
    phone, _ = apply_condition(speechlike(rate=8000), 8000, Condition.PHONE, seed=0)
    again = mulaw_roundtrip(phone)
    np.testing.assert_array_equal(again, phone)  # decoded mu-law values survive another round trip
    speech = speechlike(rate=8000).astype(np.float64)
    coded = mulaw_roundtrip(speech.astype(np.int16)).astype(np.float64)
    assert 10 * np.log10(np.mean(speech**2) / np.mean((coded - speech) ** 2)) > 30


def test_condition_wav_writes_the_conditioned_file(tmp_path: Path) -> None:
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(), RATE, subtype="PCM_16")
    out = condition_wav(source, tmp_path / "phone.wav", Condition.PHONE, seed=0)
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    noisy = condition_wav(source, tmp_path / "noise.wav", "noise", seed=9)
    expected, _ = apply_condition(speechlike(), RATE, Condition.NOISE, seed=9)
    np.testing.assert_array_equal(sf.read(noisy, dtype="int16")[0], expected)


def test_unknown_condition_is_refused() -> None:
    with pytest.raises(ValueError):
        apply_condition(speechlike(), RATE, "underwater", seed=0)
