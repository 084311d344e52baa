"""Named patient voices: each speaks a sentence as non-silent 16-bit mono audio of a plausible length,
the same samples for the same text every time, in words Whisper writes back."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from configs.settings import Settings
from media import synth
from media.audio_files import read_mono_int16
from media.synth import VOICES, synthesize, synthesize_voice
from pipeline.session import INPUT_RATE, shared_transcriber_for

SENTENCE = "I have had an itchy red rash on my arm since Monday."  # 12 words
NO_ESPEAK = "Debian's espeak-ng is not installed (apt-get install espeak-ng; scripts/test.sh installs it)"


def voice_param(name: str) -> pytest.param:
    espeak = VOICES[name].engine == "espeak"
    marks = [pytest.mark.skipif(shutil.which("espeak-ng") is None, reason=NO_ESPEAK)] if espeak else []
    return pytest.param(name, marks=marks, id=name)


def test_registry_has_the_voices_and_is_frozen() -> None:
    assert len(VOICES) >= 8
    assert {"joe", "joe_slow"} <= set(VOICES)
    assert sum(spec.engine == "espeak" for spec in VOICES.values()) >= 6
    assert len({spec.espeak_voice for spec in VOICES.values() if spec.engine == "espeak"}) >= 6
    with pytest.raises(TypeError):
        VOICES["new"] = VOICES["joe"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        VOICES["joe"].length_scale = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("name", [voice_param(name) for name in VOICES])
def test_each_voice_speaks_a_sentence(tmp_path: Path, name: str) -> None:
    path = synthesize_voice(SENTENCE, name, tmp_path / f"{name}.wav", lead_s=0.5, tail_s=0.25)
    info = sf.info(path)
    assert (info.channels, info.subtype) == (1, "PCM_16")
    samples, rate = sf.read(path, dtype="int16")
    assert not samples[: int(0.5 * rate)].any() and not samples[-int(0.25 * rate) :].any()
    speech = samples[int(0.5 * rate) : -int(0.25 * rate)].astype(np.float64)
    # 12 words at a natural 120-220 words a minute: about 3.3-6 s, and loud enough to hear.
    assert 2.5 < speech.size / rate < 7.0
    assert np.sqrt(np.mean(speech**2)) > 1000


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason=NO_ESPEAK)
def test_espeak_voices_differ(tmp_path: Path) -> None:
    digests = {
        hashlib.sha256(
            synthesize_voice("My skin hurts.", name, tmp_path / f"{name}.wav").read_bytes()
        ).digest()
        for name, spec in VOICES.items()
        if spec.engine == "espeak"
    }
    assert len(digests) == sum(spec.engine == "espeak" for spec in VOICES.values())


def test_joe_voice_matches_synthesize_and_joe_slow_is_slower(tmp_path: Path) -> None:
    plain, rate = sf.read(synthesize(SENTENCE, tmp_path / "plain.wav"), dtype="int16")
    joe, joe_rate = sf.read(synthesize_voice(SENTENCE, "joe", tmp_path / "joe.wav"), dtype="int16")
    slow, _ = sf.read(synthesize_voice(SENTENCE, "joe_slow", tmp_path / "slow.wav"), dtype="int16")
    assert rate == joe_rate
    assert np.array_equal(plain, joe)
    assert slow.size > 1.1 * joe.size


OTHER = "The mole on my back has started bleeding."
# A fresh interpreter speaks SENTENCE and prints the digest of its samples.
FRESH_PROCESS = """
import hashlib, sys, tempfile
from pathlib import Path
import soundfile as sf
from media.synth import synthesize_voice
with tempfile.TemporaryDirectory() as folder:
    samples, _ = sf.read(synthesize_voice(sys.argv[1], sys.argv[2], Path(folder) / "a.wav"), dtype="int16")
print(hashlib.sha256(samples.tobytes()).hexdigest())
"""


@pytest.mark.parametrize(
    "name", [voice_param(name) for name in VOICES if name in {"joe", "joe_slow", "us_m3"}]
)
def test_the_same_text_gives_the_same_samples_whatever_was_said_before(tmp_path: Path, name: str) -> None:
    """A test that hears a phrase hears the same audio on every run, whichever tests ran before it in the
    process (A, then B, then A again) and in a fresh process."""
    said = [
        sf.read(synthesize_voice(text, name, tmp_path / f"{index}.wav"), dtype="int16")[0]
        for index, text in enumerate([SENTENCE, OTHER, SENTENCE])
    ]
    assert np.array_equal(said[0], said[2])
    assert not np.array_equal(said[0], said[1])
    fresh = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, SENTENCE, name],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert fresh.stdout.strip() == hashlib.sha256(said[0].tobytes()).hexdigest()


# Phrases other tests hear through Whisper, and the words each of them turns on.
HEARD = {
    "My name is John Smith and the mole on my back has started bleeding.": ("mole", "back", "bleeding"),
    "I have a red itchy rash on my left forearm.": ("rash", "left forearm"),
    "It started about two weeks ago.": ("two weeks",),
    "My lips and tongue are swelling up and I can't breathe.": ("lips", "tongue", "breathe"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["joe", "joe_slow"])
def test_whisper_writes_the_words_the_tests_turn_on(tmp_path: Path, settings: Settings, name: str) -> None:
    transcriber = shared_transcriber_for(settings)  # the product's Whisper, with its vocabulary
    for index, (text, words) in enumerate(HEARD.items()):
        wav = synthesize_voice(text, name, tmp_path / f"{index}.wav", lead_s=0.3, tail_s=0.5)
        heard = transcriber.transcribe(read_mono_int16(wav, INPUT_RATE)).lower()
        assert all(word in heard for word in words), (text, heard)


def test_missing_espeak_names_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(synth.shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        synthesize_voice(SENTENCE, "us_m3", tmp_path / "x.wav")


def test_unknown_voice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown voice"):
        synthesize_voice(SENTENCE, "nobody", tmp_path / "x.wav")
