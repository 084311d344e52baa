"""faster-whisper, loaded once per process from the local model directory.

Whisper's encoder is built for a 30 s window, and faster-whisper pads every call to it: a
one-second phrase costs as much as thirty. CTranslate2 accepts shorter mel inputs, so a
short phrase is encoded in a window sized to it (10 s or 20 s, always with at least 3 s of
padding; less makes Whisper repeat itself) -- the "audio context" trick of whisper.cpp.
That cuts a pass from about 0.5 s to about 0.15 s on two cores. Audio longer than the
largest short window goes through faster-whisper's standard path.
"""

from __future__ import annotations

import asyncio
import threading
from functools import lru_cache
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from pipeline.frames import Heard

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100  # Whisper's mel frames
MIN_PADDING_S = 3.0
SHORT_WINDOWS_S = (10, 20)
NO_SPEECH_PROB = 0.6  # Whisper's own thresholds for "this was not speech"
MIN_AVG_LOGPROB = -1.0
MIN_PEAK = 300  # int16 peak below which a phrase is taken as silence (about -40 dBFS)


class Transcriber:
    """Turns 16 kHz int16 speech into text. Thread-safe; one model shared by all sessions.

    ``vocabulary`` is given to Whisper as the text that came before (its "prompt"): a sentence
    with the consultation's words makes "sores" likelier than "soars".
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self, model_dir: Path, compute_type: str = "int8", threads: int = 2, vocabulary: str = ""
    ) -> None:
        if not (model_dir / "model.bin").exists():
            raise FileNotFoundError(
                f"{model_dir}/model.bin is missing: run scripts/setup.sh to assemble the models"
            )
        self.model = WhisperModel(
            str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads
        )
        self._tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe", language="en"
        )
        self._suppressed = list(get_suppressed_tokens(self._tokenizer, [-1]))
        self.vocabulary = vocabulary.strip()
        # CTranslate2 runs one call at a time well on 2 cores; queue the rest.
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray, prompt: str = "") -> str:
        return self.transcribe_scored(samples, prompt).text

    def transcribe_scored(self, samples: np.ndarray, prompt: str = "") -> Heard:
        if samples.size == 0 or int(np.abs(samples).max()) < MIN_PEAK:
            return Heard("")  # near-silence: Whisper would invent a word ("you")
        audio = samples.astype(np.float32) / 32768.0
        seconds = audio.size / SAMPLE_RATE
        window = next((w for w in SHORT_WINDOWS_S if seconds + MIN_PADDING_S <= w), None)
        prompt = f"{self.vocabulary} {prompt.strip()}".strip()
        with self._lock:
            if window is None:
                return self._transcribe_full(audio, prompt)
            return self._transcribe_short(audio, prompt, window)

    def _transcribe_short(self, audio: np.ndarray, prompt: str, window_s: int) -> Heard:
        frames = window_s * FRAMES_PER_SECOND
        padded = np.zeros(window_s * SAMPLE_RATE, dtype=np.float32)
        padded[: audio.size] = audio
        features = self.model.feature_extractor(padded)[:, :frames]
        encoded = self.model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])), to_cpu=False
        )
        tok = self._tokenizer
        context = tok.encode(" " + prompt.strip())[-200:] if prompt.strip() else []
        prefix = ([tok.sot_prev, *context] if context else []) + [
            tok.sot,
            tok.language,
            tok.transcribe,
            tok.no_timestamps,
        ]
        seconds = audio.size / SAMPLE_RATE
        result = self.model.model.generate(
            encoded,
            [prefix],
            beam_size=1,
            max_length=min(440, 24 + int(seconds * 10)),
            suppress_blank=True,
            suppress_tokens=self._suppressed,
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tok.eot]
        avg_logprob = result.scores[0] / max(1, len(tokens) + 1)
        if result.no_speech_prob > NO_SPEECH_PROB and avg_logprob < MIN_AVG_LOGPROB:
            return Heard("", avg_logprob, result.no_speech_prob)
        return Heard(tok.decode(tokens).strip(), avg_logprob, result.no_speech_prob)

    def _transcribe_full(self, audio: np.ndarray, prompt: str) -> Heard:
        segments, _info = self.model.transcribe(
            audio,
            language="en",
            beam_size=1,
            initial_prompt=prompt or None,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        segments = list(segments)
        if not segments:
            return Heard("")
        return Heard(
            " ".join(s.text.strip() for s in segments).strip(),
            min(s.avg_logprob for s in segments),
            max(s.no_speech_prob for s in segments),
        )

    def warm_up(self) -> None:
        """The first calls are slow (allocations); pay them before the first patient does."""
        noise = np.random.default_rng(0)  # loud enough to pass MIN_PEAK: the model really runs
        for window in SHORT_WINDOWS_S:
            size = int((window - MIN_PADDING_S) * SAMPLE_RATE) - 1
            self.transcribe(noise.integers(-3000, 3000, size, dtype=np.int16))

    async def transcribe_scored_async(self, samples: np.ndarray, prompt: str = "") -> Heard:
        return await asyncio.to_thread(self.transcribe_scored, samples, prompt)


@lru_cache(maxsize=4)
def shared_transcriber(
    model_dir: Path, compute_type: str = "int8", threads: int = 2, vocabulary: str = ""
) -> Transcriber:
    """The process-wide transcriber for a model directory."""
    return Transcriber(model_dir, compute_type, threads, vocabulary)
