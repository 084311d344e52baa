"""Safety audio: the lines that call for help, kept as audio in case the voice breaks.

The escalation messages (one per escalating level, with the configured emergency number) and
the technical-failure line (``FAILURE_PREFIX``) are synthesised with Piper once per process, at
start-up (``pipeline.session.warm_up``), sentence by sentence as the TTS service splits them,
and kept as 16-bit mono PCM (``prepare_safety_audio``). The session's voice is
``SafePiperTTSService``: Piper (the process's shared voice, ``pipeline/shared_models.py``), and
when Piper raises, reports an error or yields no audio for a sentence that is one of those
lines, the kept audio is played in its place (resampled to the output rate), so a patient hears
"call the emergency number" and "a clinician is coming" even with the voice broken. The error
still goes upstream, so the fail-safe (``pipeline/fail_safe.py``) escalates the session.

The fallback sits inside the TTS service's own synthesis step, right where Piper fails: a
processor after the TTS service would only learn of the silence once the service gives up on the
sentence (its stop-frame timeout, seconds), and the patient would wait that long for each line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, Callable, Iterable
from pathlib import Path
from threading import Lock

import numpy as np
import soxr
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame

from agent.escalation import escalation_message
from agent.policy import Urgency, default_policy
from pipeline.escalation import FAILURE_PREFIX
from pipeline.metrics import SAFETY_AUDIO_PLAYED_TOTAL
from pipeline.shared_models import SharedPiperTTSService, shared_piper_voice

log = logging.getLogger(__name__)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# What synthesises one sentence: 16-bit mono PCM and its sample rate.
Synthesize = Callable[[str], tuple[bytes, int]]


def _key(text: str) -> str:
    return " ".join(text.split()).lower()


def sentences(text: str) -> list[str]:
    """A line as the TTS service speaks it: sentence by sentence."""
    return [part.strip() for part in SENTENCE_END.split(text) if part.strip()]


def safety_lines(emergency_number: str, escalate_from: Urgency | None = None) -> list[str]:
    """What the agent must be able to say with no voice: each escalating level's message, the failure line."""
    escalate_from = escalate_from or default_policy().escalate_from
    levels = [level for level in Urgency if level.rank <= escalate_from.rank]
    messages = dict.fromkeys(escalation_message(level, emergency_number) for level in levels)
    return [*messages, FAILURE_PREFIX]


class SafetyAudio:
    """The safety lines' sentences as Piper said them at start-up, by their text.

    Shared by every session of the process (``kept_safety_audio``); empty until
    ``prepare_safety_audio`` fills it.
    """

    def __init__(self) -> None:
        self._kept: dict[str, tuple[bytes, int]] = {}
        self._resampled: dict[tuple[str, int], bytes] = {}
        self._lock = Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, text: str, pcm: bytes, sample_rate: int) -> None:
        with self._lock:
            self._kept[_key(text)] = (pcm, sample_rate)
            self._resampled = {k: v for k, v in self._resampled.items() if k[0] != _key(text)}

    def audio_for(self, text: str, sample_rate: int) -> bytes | None:
        """The kept audio of ``text`` at ``sample_rate``; None when it is not a kept sentence."""
        key = _key(text)
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                return None
            cached = self._resampled.get((key, sample_rate))
            if cached is None:
                pcm, rate = kept
                cached = pcm if rate == sample_rate else _resample(pcm, rate, sample_rate)
                self._resampled[(key, sample_rate)] = cached
            return cached


def _resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    samples = np.frombuffer(pcm, dtype=np.int16)
    return soxr.resample(samples, from_rate, to_rate).astype(np.int16).tobytes()


_shared: dict[tuple[Path, str], SafetyAudio] = {}
_shared_lock = Lock()


def kept_safety_audio(voice_model: Path, emergency_number: str) -> SafetyAudio:
    """The process's kept safety audio for this voice and emergency number (empty until prepared)."""
    with _shared_lock:
        return _shared.setdefault((voice_model, emergency_number), SafetyAudio())


def piper_synthesize(voice_model: Path) -> Synthesize:
    """Synthesis with the process's Piper voice, the one every session speaks with."""
    voice = shared_piper_voice(voice_model)

    def synthesize(text: str) -> tuple[bytes, int]:
        pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text))
        return pcm, voice.config.sample_rate

    return synthesize


def prepare_safety_audio(
    voice_model: Path, emergency_number: str, synthesize: Synthesize | None = None
) -> SafetyAudio:
    """Synthesise every sentence of the safety lines once and keep it (start-up; seconds of CPU).

    A sentence Piper cannot say now is logged and left out: the product still starts, and that
    sentence has no fallback.
    """
    kept = kept_safety_audio(voice_model, emergency_number)
    synthesize = synthesize or piper_synthesize(voice_model)
    for sentence in _unique(s for line in safety_lines(emergency_number) for s in sentences(line)):
        try:
            pcm, rate = synthesize(sentence)
        except Exception as exc:  # noqa: BLE001 - one sentence without a fallback must not stop the start
            log.error("safety audio: a sentence could not be synthesised (%s)", type(exc).__name__)
            continue
        if pcm:
            kept.keep(sentence, pcm, rate)
    log.info("safety audio: %d sentences kept", len(kept))
    return kept


def _unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))


class SafePiperTTSService(SharedPiperTTSService):
    """Piper, with the kept audio played for a safety sentence Piper fails to say."""

    def __init__(self, *, kept: SafetyAudio, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._kept = kept

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        error: ErrorFrame | None = None
        spoke = False
        try:
            async for frame in super().run_tts(text, context_id):
                if isinstance(frame, ErrorFrame):
                    error = error or frame
                    continue
                spoke = spoke or (isinstance(frame, TTSAudioRawFrame) and bool(frame.audio))
                yield frame
        except Exception as exc:  # noqa: BLE001 - Piper raising is what the kept audio is for
            error = ErrorFrame(error=f"Piper failed: {type(exc).__name__}", exception=exc)
        if error is not None or not spoke:
            audio = self._kept.audio_for(text, self.sample_rate)
            if audio is not None:
                SAFETY_AUDIO_PLAYED_TOTAL.inc()
                log.warning("voice failed on a safety line: playing the audio kept at start-up")
                for frame in self._kept_frames(audio, context_id):
                    yield frame
        if error is not None:
            yield error

    def _kept_frames(self, audio: bytes, context_id: str) -> list[TTSAudioRawFrame]:
        step = max(self.chunk_size, 2) & ~1
        return [
            TTSAudioRawFrame(audio[i : i + step], self.sample_rate, 1, context_id=context_id)
            for i in range(0, len(audio), step)
        ]
