"""Benchmark: the G.711 codecs and resamplers the media layer chose between.

``python -m tools.bench_codecs`` prints one JSON object:

- ``g711``: microseconds to encode and to decode one 20 ms packet (160 samples, the real use)
  with the hand-written table codec and with PyAV's ``pcm_mulaw``/``pcm_alaw``, and how many of
  the 65,536 int16 inputs each encodes differently from the ITU/Sun reference tables.
- ``resample_stream``: live resampling in 20 ms chunks: microseconds per chunk, the most output
  held back (``held_ms``: what a listener waits for beyond the chunk), and the quality below.
- ``resample_once``: a whole 10 s recording: milliseconds, ``length_off`` (the worst output length
  error, in samples, against ``len * out_rate / in_rate`` over short and odd inputs), and the quality below.

Quality: a sum of tones inside the pass band goes in; each output tone's amplitude and phase are
fitted (so any delay is allowed) and what the fit does not explain is the error (``snr_db``);
``gain_db`` is the worst tone's level change; ``alias_db`` is what comes out of a tone just above
the output's Nyquist frequency (folded back), or, upsampling, the image of one just below the
input's. Timings are the best of several runs (the least disturbed by other work). The candidates
live here, not in the runtime code, which keeps only the winner of each (``media.resample``,
``media.sip.g711``).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from math import gcd

import av
import numpy as np
import soxr
from scipy.signal import resample_poly

from media.resample import ChunkResampler, resample
from media.sip.g711 import PCMA, PCMU, Codec

PACKET = 160  # 20 ms at 8 kHz
STREAM_PAIRS = [(8000, 16000), (16000, 8000), (24000, 48000), (48000, 8000)]
ONCE_PAIRS = [(44100, 16000), (24000, 16000), (16000, 8000)]
LENGTHS = [7, 159, 2205, 22051]  # input lengths whose output length the one-shot candidates must get right
EMPTY = np.zeros(0, dtype=np.int16)
Resample = Callable[[np.ndarray], np.ndarray]  # one chunk in, what is ready out
Whole = Callable[[np.ndarray, int, int], np.ndarray]  # a whole signal, its rate, the rate wanted


def best_us(fn: Callable[[], object], number: int, repeat: int = 5) -> float:
    """Microseconds per call, best of ``repeat`` runs (the least disturbed by other work)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return round(min(times) * 1e6, 2)


# --- G.711 -----------------------------------------------------------------------------------


class PyAvG711:
    """PyAV's (FFmpeg's) G.711 at its quickest: contexts kept open and one frame refilled, as a call would."""

    def __init__(self, name: str) -> None:
        self._encoder = av.CodecContext.create(name, "w")
        self._encoder.sample_rate, self._encoder.format, self._encoder.layout = 8000, "s16", "mono"
        self._decoder = av.CodecContext.create(name, "r")
        self._decoder.sample_rate, self._decoder.layout = 8000, "mono"
        self._frames: dict[int, av.AudioFrame] = {}
        self._pts = 0

    def encode(self, samples: np.ndarray) -> bytes:
        if samples.size not in self._frames:
            self._frames[samples.size] = av.AudioFrame(format="s16", layout="mono", samples=samples.size)
            self._frames[samples.size].sample_rate = 8000
        frame = self._frames[samples.size]
        frame.planes[0].update(samples)
        frame.pts = self._pts
        self._pts += samples.size
        return b"".join(bytes(packet) for packet in self._encoder.encode(frame))

    def decode(self, payload: bytes) -> np.ndarray:
        frames = self._decoder.decode(av.Packet(payload))
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames])


def reference_encode(codec: Codec) -> Callable[[np.ndarray], bytes]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # Sun's g711.c, the classic reference (deprecated, still in 3.11/3.12)
    encode = audioop.lin2ulaw if codec is PCMU else audioop.lin2alaw
    return lambda samples: encode(samples.tobytes(), 2)


def bench_g711() -> dict:
    packet = (np.sin(2 * np.pi * 440 * np.arange(PACKET) / 8000) * 8000).astype(np.int16)
    every = np.arange(-32768, 32768, dtype=np.int16)
    result: dict = {"packet_samples": PACKET}
    for codec, av_name in ((PCMU, "pcm_mulaw"), (PCMA, "pcm_alaw")):
        payload = codec.encode(packet)
        reference = np.frombuffer(reference_encode(codec)(every), dtype=np.uint8)
        for label, impl in (("handwritten", codec), ("pyav", PyAvG711(av_name))):
            coded = b"".join(impl.encode(every[i : i + 4096]) for i in range(0, every.size, 4096))
            differs = np.frombuffer(coded, np.uint8) != reference
            result.setdefault(label, {})[codec.name] = {
                "encode_us": best_us(lambda impl=impl: impl.encode(packet), 5000),
                "decode_us": best_us(lambda impl=impl, payload=payload: impl.decode(payload), 5000),
                "encode_differs_from_reference": int(np.count_nonzero(differs)),
            }
    return result


# --- resampling ------------------------------------------------------------------------------


def tones(rate: int, seconds: float, top_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Int16 sum of 7 tones up to ``top_hz``, with their frequencies and amplitudes."""
    freqs = np.linspace(150.0, top_hz, 7)
    amps = np.full(freqs.size, 3000.0)
    phases = np.random.default_rng(3).uniform(0, 2 * np.pi, freqs.size)
    t = np.arange(int(rate * seconds)) / rate
    signal = np.sum(amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]), axis=0)
    return np.round(signal).astype(np.int16), freqs, amps


def fit(out: np.ndarray, rate: int, freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each tone's fitted amplitude in ``out`` and what the tones leave unexplained (50 ms edges out)."""
    edge = rate // 20
    y = out[edge:-edge].astype(np.float64)
    t = (np.arange(y.size) + edge) / rate
    basis = np.concatenate([np.sin(2 * np.pi * freqs[:, None] * t), np.cos(2 * np.pi * freqs[:, None] * t)]).T
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return np.hypot(coef[: freqs.size], coef[freqs.size :]), y - basis @ coef


def quality(whole: Whole, in_rate: int, out_rate: int) -> dict:
    """SNR and worst tone level change (dB) in the pass band; alias: what comes back of a tone the
    output cannot carry (just above its Nyquist frequency), or the image of one near the input's."""
    signal, freqs, amps = tones(in_rate, 2.0, 0.42 * min(in_rate, out_rate))
    fitted, error = fit(whole(signal, in_rate, out_rate), out_rate, freqs)
    if out_rate < in_rate:
        probe, heard_at = 0.5125 * out_rate, 0.4875 * out_rate
    else:
        probe, heard_at = 0.45 * in_rate, 0.55 * in_rate
    t = np.arange(2 * in_rate) / in_rate
    tone = np.round(10000 * np.sin(2 * np.pi * probe * t)).astype(np.int16)
    alias, _ = fit(whole(tone, in_rate, out_rate), out_rate, np.array([heard_at]))
    return {
        "snr_db": round(float(10 * np.log10(np.sum(amps**2) / 2 / np.mean(error**2))), 1),
        "gain_db": round(float(np.max(np.abs(20 * np.log10(fitted / amps)))), 3),
        "alias_db": round(float(20 * np.log10(alias[0] / 10000 + 1e-9)), 1),
    }


def soxr_stream(in_rate: int, out_rate: int) -> Resample:
    return soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16").resample_chunk


def pyav_stream(in_rate: int, out_rate: int) -> Resample:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate)
    sent = [0]

    def process(samples: np.ndarray) -> np.ndarray:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = in_rate, sent[0]
        sent[0] += samples.size
        return np.concatenate([EMPTY] + [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)])

    return process


def soxr_window(in_rate: int, out_rate: int) -> Resample:
    return ChunkResampler(in_rate, out_rate).process


STREAMERS: dict[str, Callable[[int, int], Resample]] = {
    "soxr_window (media.resample.ChunkResampler)": soxr_window,
    "soxr_stream (soxr.ResampleStream)": soxr_stream,
    "pyav_swr (av.AudioResampler)": pyav_stream,
}


def chunks_of(samples: np.ndarray, rate: int) -> list[np.ndarray]:
    step = rate // 50  # 20 ms, as the phone line and the room send them
    return [samples[i : i + step] for i in range(0, samples.size, step)]


def bench_stream(make: Callable[[int, int], Resample], in_rate: int, out_rate: int) -> dict:
    def whole(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
        process = make(in_rate, out_rate)
        return np.concatenate([process(chunk) for chunk in chunks_of(samples, in_rate)])

    chunks = chunks_of(tones(in_rate, 1.0, 1000.0)[0], in_rate)
    process, held, sent, heard = make(in_rate, out_rate), 0.0, 0, 0
    for chunk in chunks:
        sent, heard = sent + chunk.size, heard + process(chunk).size
        held = max(held, (sent / in_rate - heard / out_rate) * 1000)
    us = best_us(lambda: whole(np.concatenate(chunks), in_rate, out_rate), 1, repeat=25) / len(chunks)
    return {"us_per_20ms": round(us, 1), "held_ms": round(held, 1)} | quality(whole, in_rate, out_rate)


def pyav_once(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts = in_rate, 0
    frames = [*resampler.resample(frame), *resampler.resample(None)]
    return np.concatenate([EMPTY] + [f.to_ndarray().reshape(-1) for f in frames])


def scipy_once(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    g = gcd(in_rate, out_rate)
    out = resample_poly(samples.astype(np.float32), out_rate // g, in_rate // g)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


ONE_SHOTS: dict[str, Whole] = {
    "soxr (media.resample.resample)": resample,
    "pyav_swr (av.AudioResampler)": pyav_once,
    "scipy_poly (scipy.signal.resample_poly)": scipy_once,
}


def bench_once(whole: Whole, in_rate: int, out_rate: int) -> dict:
    """Milliseconds for 10 s; ``length_off``: the worst length error (samples) over short and odd inputs."""
    signal = tones(in_rate, 10.0, 1000.0)[0]
    ms = best_us(lambda: whole(signal, in_rate, out_rate), 1) / 1000
    off = max(abs(whole(signal[:n], in_rate, out_rate).size - n * out_rate / in_rate) for n in LENGTHS)
    return {"ms_per_10s": round(ms, 2), "length_off": round(off, 2)} | quality(whole, in_rate, out_rate)


def main() -> None:
    stream = {
        name: {f"{i}->{o}": bench_stream(make, i, o) for i, o in STREAM_PAIRS}
        for name, make in STREAMERS.items()
    }
    once = {
        name: {f"{i}->{o}": bench_once(whole, i, o) for i, o in ONCE_PAIRS}
        for name, whole in ONE_SHOTS.items()
    }
    report = {"g711": bench_g711(), "resample_stream": stream, "resample_once": once}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
