"""Changing sample rates, the one way the media layer does it: soxr (HQ), mono, int16 out.

- ``resample``: a whole signal at once (a recording, a clip), aligned with the input and
  ``len * to_rate / from_rate`` long (rounded).
- ``ChunkResampler``: live audio in chunks (the phone line, the room). soxr's own
  ``ResampleStream`` releases output in blocks of 40-160 ms at these rates: too slow for a
  conversation. Here each chunk is resampled with the one-shot resampler over a short window
  (``HISTORY_S`` of past input, the new chunk) and only the part that has ``LOOKAHEAD_S`` of input
  after it is released: 5 ms of delay, and the result stays more than 50 dB above its difference
  from the whole-signal one (G.711 itself is about 38 dB).

Why soxr (``python -m tools.bench_codecs``): FFmpeg's resampler (PyAV) streams faster
(30-50 against 50-140 us per 20 ms chunk, both under 1% of the chunk), but it lets a tone just
above the output's Nyquist frequency fold back at -15 dB (soxr: below -70 dB), and on whole
signals it gets lengths wrong by up to 5 samples; scipy's ``resample_poly`` is slower and folds
more back.
"""

from __future__ import annotations

from math import gcd

import numpy as np
import soxr

HISTORY_S = 0.03
LOOKAHEAD_S = 0.005
QUALITY = "HQ"


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def _to_float(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    return samples.astype(np.float32, copy=False)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono ``samples`` (int16, or float in [-1, 1]) at ``from_rate`` as int16 at ``to_rate``."""
    if from_rate == to_rate or samples.size == 0:
        return samples if samples.dtype == np.int16 else _to_int16(samples)
    return _to_int16(soxr.resample(_to_float(samples), from_rate, to_rate, QUALITY))


class ChunkResampler:
    """int16 mono chunks in at ``in_rate``, int16 out at ``out_rate``, ``LOOKAHEAD_S`` late."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._step = in_rate // gcd(in_rate, out_rate)  # window starts keep output indices whole
        self._look = int(in_rate * LOOKAHEAD_S)
        self._keep = int(in_rate * HISTORY_S) + self._look
        self.reset()

    def reset(self) -> None:
        """Start over (after an interruption: nothing old leaks into what comes next)."""
        self._buffer = np.zeros(0, dtype=np.float32)
        self._start = 0  # input index of self._buffer[0]
        self._total_in = 0
        self._emitted = 0  # output samples released so far

    def process(self, samples: np.ndarray) -> np.ndarray:
        """The output that now has ``LOOKAHEAD_S`` of input after it (empty until it has)."""
        if self.in_rate == self.out_rate:
            return samples
        self._buffer = np.concatenate([self._buffer, _to_float(samples)])
        self._total_in += samples.size
        ready = max(0, (self._total_in - self._look) * self.out_rate // self.in_rate)
        out = np.zeros(0, dtype=np.int16)
        if ready > self._emitted:
            resampled = soxr.resample(self._buffer, self.in_rate, self.out_rate, QUALITY)
            offset = self._start * self.out_rate // self.in_rate
            out = _to_int16(resampled[self._emitted - offset : ready - offset])
            self._emitted += out.size
        drop = max(0, self._buffer.size - self._keep)
        drop -= drop % self._step
        if drop:
            self._buffer = self._buffer[drop:]
            self._start += drop
        return out
