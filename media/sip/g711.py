"""G.711 mu-law (PCMU) and A-law (PCMA): numpy lookup tables, bit-exact with the classic codec.

The tables are built once from the reference algorithm (Sun's ``g711.c``, which the stdlib's
deprecated ``audioop`` also follows): 256 entries to decode, 65,536 to encode (one per int16).
The one G.711 of the code base (the phone line, the evaluation's phone condition): kept over PyAV's
``pcm_mulaw``/``pcm_alaw``, which per 20 ms packet take 5-7 us to encode and 9-13 us to decode against
3-5 and 2-3 us here, and encode 512 (mu-law) and 964 (A-law) of the 65,536 inputs differently from
the reference (``python -m tools.bench_codecs``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 8000


def _segment(values: np.ndarray, ends: list[int]) -> np.ndarray:
    return np.searchsorted(np.array(ends), values, side="left")


def _ulaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + 0x21
    seg = _segment(magnitude, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> (np.minimum(seg, 7) + 1)) & 0xF))
    return (code ^ mask).astype(np.uint8)


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(magnitude, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | ((magnitude >> shift) & 0xF))
    return (code ^ mask).astype(np.uint8)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


@dataclass(frozen=True, eq=False)
class Codec:
    """One G.711 variant: its RTP name, static payload type and tables."""

    name: str  # as in SDP rtpmap: PCMU / PCMA
    payload_type: int
    encode_table: np.ndarray
    decode_table: np.ndarray
    silence_byte: int

    def encode(self, samples: np.ndarray) -> bytes:
        """int16 mono samples -> one byte per sample."""
        index = samples.astype(np.int32) + 32768
        return self.encode_table[index].tobytes()

    def decode(self, payload: bytes) -> np.ndarray:
        """One byte per sample -> int16 mono samples."""
        return self.decode_table[np.frombuffer(payload, dtype=np.uint8)]


PCMU = Codec("PCMU", 0, _ulaw_encode_table(), _ulaw_decode_table(), silence_byte=0xFF)
PCMA = Codec("PCMA", 8, _alaw_encode_table(), _alaw_decode_table(), silence_byte=0xD5)
CODECS: dict[str, Codec] = {PCMU.name: PCMU, PCMA.name: PCMA}
