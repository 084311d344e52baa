"""faster-whisper, loaded once per process from the local model directory.

Whisper's encoder is built for a 30 s window, and faster-whisper pads every call to it: a
one-second phrase costs as much as thirty. CTranslate2 accepts shorter mel inputs, so a
short phrase is encoded in a window sized to it (10 s or 20 s, always with at least 3 s of
padding; less makes Whisper repeat itself) -- the "audio context" trick of whisper.cpp.
That cuts a pass from about 0.5 s to about 0.15 s on two cores. Audio longer than the
largest short window goes through faster-whisper's standard path.

One model serves every session, one pass at a time (CTranslate2 runs one call well on two
cores). Passes of concurrent sessions are batched (``pipeline.whisper_batch``): the short-window
passes that queue while a pass runs are taken together -- only those of the same window, so that
each is encoded exactly as it would be alone -- and their decoding runs as one CTranslate2
``generate`` call for each group of equal prompt lengths (CTranslate2 needs the start-of-transcript
token at one position across a batch; padding a prompt would change what Whisper writes). The
decoder is what batching speeds up: it runs token by token, reading all of its weights for every
token, so two phrases decoded together cost little more than one. The encoder is compute-bound on
two cores -- batched, it measured no faster, and slower at four -- so each phrase is encoded alone.
Every caller gets the ``Heard`` it would get alone (the same text and scores); a batch that fails
fails for each of its callers. Long passes (the standard path) are never batched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from pipeline.frames import Heard
from pipeline.whisper_batch import PassQueue

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100  # Whisper's mel frames
MIN_PADDING_S = 3.0
SHORT_WINDOWS_S = (10, 20)
NO_SPEECH_PROB = 0.6  # Whisper's own thresholds for "this was not speech"
MIN_AVG_LOGPROB = -1.0
MIN_PEAK = 300  # int16 peak below which a phrase is taken as silence (about -40 dBFS)
MAX_LENGTH = 448  # Whisper's text context: prompt and written tokens together
# The most passes decoded as one batch: more than the sessions a server runs at once
# (``max_concurrent``), so every waiting session's phrase fits; capped because a batch's first
# caller waits for the whole batch, and a runaway caller count should not make one wait for all.
MAX_BATCH = 8


@dataclass(frozen=True)
class _Pass:
    """One phrase to transcribe: the audio as floats, and the text Whisper is told came before."""

    audio: np.ndarray
    prompt: str


class Transcriber:
    """Turns 16 kHz int16 speech into text. Thread-safe; one model shared by all sessions.

    ``vocabulary`` is given to Whisper as the text that came before (its "prompt"): a sentence
    with the consultation's words makes "sores" likelier than "soars". ``batch=False`` runs every
    pass alone (first come, first served), as a baseline for ``tools.bench_whisper``.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model_dir: Path,
        compute_type: str = "int8",
        threads: int = 2,
        vocabulary: str = "",
        *,
        batch: bool = True,
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
        # One worker at a time on the model; the passes that wait meanwhile run as a batch.
        self.passes: PassQueue[int, _Pass, Heard] = PassQueue(self._run_passes, MAX_BATCH if batch else 1)

    def transcribe(self, samples: np.ndarray, prompt: str = "") -> str:
        return self.transcribe_scored(samples, prompt).text

    def transcribe_scored(self, samples: np.ndarray, prompt: str = "") -> Heard:
        if samples.size == 0 or int(np.abs(samples).max()) < MIN_PEAK:
            return Heard("")  # near-silence: Whisper would invent a word ("you")
        audio = samples.astype(np.float32) / 32768.0
        seconds = audio.size / SAMPLE_RATE
        window = next((w for w in SHORT_WINDOWS_S if seconds + MIN_PADDING_S <= w), None)
        prompt = f"{self.vocabulary} {prompt.strip()}".strip()
        return self.passes.run(window, _Pass(audio, prompt))

    def _run_passes(self, window: int | None, passes: list[_Pass]) -> list[Heard]:
        """Passes of one window (``None``: one long pass, the standard path), one result each."""
        if window is None:
            return [self._transcribe_full(item.audio, item.prompt) for item in passes]
        return self._transcribe_short(passes, window)

    def _transcribe_short(self, passes: list[_Pass], window_s: int) -> list[Heard]:
        """Each pass encoded alone in the window; decoded together with those of equal prompt length."""
        encoded = [self._encode(item.audio, window_s) for item in passes]
        prefixes = [self._prefix(item.prompt) for item in passes]
        # Tokens each may write: speech is about 3 a second, so 10 a second and 24 more is room for a
        # fast talker and stops a decode that repeats itself. CTranslate2's max_length counts the prompt.
        limits = [
            min(MAX_LENGTH, len(prefix) - 1 + 24 + int(item.audio.size / SAMPLE_RATE * 10))
            for item, prefix in zip(passes, prefixes, strict=True)
        ]
        groups: dict[int, list[int]] = {}
        for index, prefix in enumerate(prefixes):
            groups.setdefault(len(prefix), []).append(index)
        heard: dict[int, Heard] = {}
        for indices in groups.values():
            batch_limit = max(limits[i] for i in indices)
            results = self._generate(
                [encoded[i] for i in indices], [prefixes[i] for i in indices], batch_limit
            )
            for i, result in zip(indices, results, strict=True):
                own = limits[i] - len(prefixes[i]) + 1  # the tokens it may write alone
                if limits[i] < batch_limit and len(result.sequences_ids[0]) >= own:
                    # It ran to its own limit (a runaway decode): decoded again alone, for its own score.
                    result = self._generate([encoded[i]], [prefixes[i]], limits[i])[0]
                heard[i] = self._heard(result)
        return [heard[i] for i in range(len(passes))]  # every pass's own result, in its caller's place

    def _encode(self, audio: np.ndarray, window_s: int) -> np.ndarray:
        frames = window_s * FRAMES_PER_SECOND
        padded = np.zeros(window_s * SAMPLE_RATE, dtype=np.float32)
        padded[: audio.size] = audio
        features = self.model.feature_extractor(padded)[:, :frames]
        return np.asarray(
            self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])))
        )

    def _prefix(self, prompt: str) -> list[int]:
        tok = self._tokenizer
        context = tok.encode(" " + prompt.strip())[-200:] if prompt.strip() else []
        return ([tok.sot_prev, *context] if context else []) + [
            tok.sot,
            tok.language,
            tok.transcribe,
            tok.no_timestamps,
        ]

    def _generate(
        self, encoded: list[np.ndarray], prefixes: list[list[int]], max_length: int
    ) -> list[ctranslate2.models.WhisperGenerationResult]:
        return self.model.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(encoded))),
            prefixes,
            beam_size=1,
            max_length=max_length,
            suppress_blank=True,
            suppress_tokens=self._suppressed,
            return_scores=True,
            return_no_speech_prob=True,
        )

    def _heard(self, result: ctranslate2.models.WhisperGenerationResult) -> Heard:
        tok = self._tokenizer
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
