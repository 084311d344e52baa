"""G.711: the tables match the reference codec bit for bit, and speech survives a round trip."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from media.sip.g711 import PCMA, PCMU, Codec

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the reference (deprecated in the stdlib, fine as a test oracle on 3.11)

EVERY_SAMPLE = np.arange(-32768, 32768, dtype=np.int16)


@pytest.mark.parametrize(
    ("codec", "encode", "decode"),
    [(PCMU, audioop.lin2ulaw, audioop.ulaw2lin), (PCMA, audioop.lin2alaw, audioop.alaw2lin)],
)
def test_bit_exact_with_the_reference(codec: Codec, encode, decode) -> None:
    assert codec.encode(EVERY_SAMPLE) == encode(EVERY_SAMPLE.tobytes(), 2)
    codes = bytes(range(256))
    assert np.array_equal(codec.decode(codes), np.frombuffer(decode(codes, 2), dtype=np.int16))


@pytest.mark.parametrize(
    ("codec", "codes", "levels"),
    [
        (PCMU, [0xFF, 0x80, 0x00], [0, 32124, -32124]),  # G.711 mu-law: zero, full scale, both signs
        (PCMA, [0xD5, 0xAA, 0x2A], [8, 32256, -32256]),  # A-law (even bits inverted): the smallest step
    ],
)
def test_the_itu_codes_for_silence_and_full_scale(codec: Codec, codes: list[int], levels: list[int]) -> None:
    """Anchors from the standard itself, so a phone on the other end hears the same levels."""
    assert codec.encode(np.array([0, 32767, -32768], dtype=np.int16)) == bytes(codes)
    assert codec.decode(bytes(codes)).tolist() == levels


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_a_tone_survives_with_telephone_quality(codec: Codec) -> None:
    tone = (np.sin(2 * np.pi * 440 * np.arange(8000) / 8000) * 12000).astype(np.int16)
    back = codec.decode(codec.encode(tone)).astype(np.float64)
    snr = 10 * np.log10(np.mean(tone.astype(np.float64) ** 2) / np.mean((tone - back) ** 2))
    assert snr > 30  # G.711 gives about 38 dB on speech-level signals
    assert len(codec.encode(tone)) == tone.size  # one byte per sample: 64 kbit/s


def test_silence_bytes_decode_to_near_zero() -> None:
    assert abs(int(PCMU.decode(bytes([PCMU.silence_byte]))[0])) == 0
    assert abs(int(PCMA.decode(bytes([PCMA.silence_byte]))[0])) <= 8
