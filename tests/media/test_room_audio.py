"""Room audio: each participant hears the others, in real time, without clicks or drift."""

from __future__ import annotations

import numpy as np
from aiortc.mediastreams import AudioStreamTrack  # a silent 8 kHz source: the agent when quiet

from media.room_audio import AudioRing, OverlayTrack, RingMixTrack, mix


def tone(freq: float, seconds: float, rate: int, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_a_ring_resamples_to_the_listener_rate_and_pads_with_silence() -> None:
    ring = AudioRing(48000)
    for chunk in np.split(tone(440, 0.2, 16000), 10):  # 20 ms chunks at 16 kHz
        ring.push(chunk, 16000)
    out = ring.pull(48000 // 10)  # 100 ms at 48 kHz
    assert np.abs(out[1000:]).max() > 6000  # the tone came through, resampled
    spectrum = np.abs(np.fft.rfft(out[500:4500]))
    assert abs(np.argmax(spectrum) * 48000 / 4000 - 440) < 20
    rest = len(ring)
    assert not np.any(ring.pull(48000)[rest:])  # then silence, not noise


def test_a_ring_has_each_chunk_ready_at_once() -> None:
    ring = AudioRing(48000)
    ring.push(tone(440, 0.02, 16000), 16000)  # one 20 ms packet of a 16 kHz voice
    assert len(ring) >= 48000 * 0.015  # at most 5 ms waits for the next packet, not 40-160 ms


def test_a_ring_that_falls_behind_drops_the_oldest_audio() -> None:
    ring = AudioRing(8000, max_s=0.5)
    ring.push(np.ones(8000 * 2, dtype=np.int16), 8000)
    assert len(ring) == 4000


def test_mixing_never_wraps_around() -> None:
    loud = np.full(4, 30000, dtype=np.int16)
    assert list(mix(loud, loud)) == [32767] * 4


async def test_the_clinician_track_plays_patient_and_agent_together() -> None:
    patient, agent = AudioRing(48000), AudioRing(48000)
    patient.push(tone(300, 0.1, 16000), 16000)
    agent.push(tone(1000, 0.1, 24000), 24000)
    track = RingMixTrack([patient, agent])
    frames = [await track.recv() for _ in range(4)]
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    spectrum = np.abs(np.fft.rfft(samples[960:]))
    freqs = np.fft.rfftfreq(samples[960:].size, 1 / 48000)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert abs(peaks[0] - 300) < 30 and abs(peaks[1] - 1000) < 30


async def test_the_patient_hears_the_clinician_over_the_agent_and_the_room_hears_the_agent() -> None:
    heard: list[np.ndarray] = []
    clinician = AudioRing(48000)
    clinician.push(tone(500, 0.1, 48000), 48000)
    track = OverlayTrack(AudioStreamTrack(), overlay=clinician, on_frame=lambda s, r: heard.append(s))
    frame = await track.recv()
    assert np.abs(frame.to_ndarray()).max() > 6000  # the clinician over the (silent) agent
    assert len(heard) == 1 and not heard[0].any()  # the room heard exactly what the agent sent
