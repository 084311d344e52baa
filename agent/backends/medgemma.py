"""MODEL_BACKEND=local: MedGemma in this process, with transformers, from a local directory.

The model is loaded once per process and model directory (``load_model`` caches it); every
session's backend shares it and is cheap to create. Generation runs on the model's own single
worker thread: replies are serialised (one GPU, one batch) and CUDA graphs, which torch records
per thread, are recorded once. Text streams back through ``TextStreamer`` into the event loop
as it is decoded; closing the reply (barge-in) sets a flag that a stopping criterion checks after
every token, so generation stops within one token.

On a GPU the model decodes with a static KV cache of a fixed size, which transformers compiles
(``torch.compile``, CUDA graphs) on the first call; ``warm_up()`` makes that first call at start-up
so that the first patient does not wait for the compiler (see docs/models.md).
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import (
    AsyncTextIteratorStreamer,
    AutoModelForImageTextToText,
    AutoProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation import BaseStreamer

from agent.backends.base import BrainBackend, BrainRequest
from agent.backends.prompt import Message, Prompt, build_prompt, greeting
from configs.settings import ConfigError, Settings

log = logging.getLogger(__name__)

CONTEXT_TOKENS = 4096  # prompt + reply; the static cache's fixed size (one compiled graph)
WARM_UP_TEXT = "I have a red itchy patch on my arm that appeared a few days ago."


def resolve_model_dir(settings: Settings) -> Path:
    """Where ``LLM__MEDGEMMA_MODEL_ID`` lives: a directory (absolute, or relative to the repository), or a
    hub id whose files were put in ``models/<last part of the id>`` (the hub itself is never contacted)."""
    model_id = settings.llm.medgemma_model_id.strip()
    as_path = Path(model_id).expanduser()
    if as_path.is_absolute() or model_id.startswith((".", "~")) or settings.path(as_path).is_dir():
        path = settings.path(as_path)
    else:
        path = settings.path(settings.models_dir) / model_id.rstrip("/").split("/")[-1]
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"MedGemma not found at {path}: run scripts/download_models.sh (needs HF_TOKEN and the licence "
            "accepted on huggingface.co) or set LLM__MEDGEMMA_MODEL_ID to a local model directory"
        )
    return path


def resolve_device(name: str) -> str:
    """``cuda``, ``cpu`` or ``auto`` (cuda when one is visible) -> a torch device name."""
    wanted = name.strip().lower()
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"LLM__DEVICE={name} but torch sees no CUDA device (set LLM__DEVICE=cpu or auto)"
            )
        return wanted
    if wanted == "cpu":
        return "cpu"
    raise ConfigError(f"LLM__DEVICE={name!r} is not one of cuda, cpu, auto")


@dataclass
class ReplyStats:
    """Timings of one generation (perf_counter seconds, each token when it reached the host); no text."""

    prompt_tokens: int = 0
    started: float = 0.0
    token_times: list[float] = field(default_factory=list)
    cancelled: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def new_tokens(self) -> int:
        return len(self.token_times)

    @property
    def tokens_per_s(self) -> float:
        """Decode speed after the first token."""
        if len(self.token_times) < 2:
            return 0.0
        return (len(self.token_times) - 1) / (self.token_times[-1] - self.token_times[0])


class LoadedModel:
    """A processor and model on a device, with the one thread that generates with them."""

    def __init__(self, processor: Any, model: Any, device: str, *, static_cache: bool | None = None) -> None:
        self.processor = processor
        self.model = model
        self.device = device
        self.dtype = model.dtype  # bf16 on a GPU, float32 on a CPU (see _load)
        self.static_cache = device.startswith("cuda") if static_cache is None else static_cache
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medgemma")
        self.warm_up_s: float | None = None
        self._warm_lock = threading.Lock()

    def generate(
        self, prompt: Prompt, max_new_tokens: int, streamer: Any, stop: threading.Event, stats: ReplyStats
    ) -> None:
        """Generate a reply (on the worker thread); ``streamer`` receives the text as it is decoded."""
        try:
            inputs = self._inputs(prompt, max_new_tokens)
            stats.prompt_tokens = int(inputs["input_ids"].shape[1])
            kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False}
            if self.static_cache:
                kwargs |= {"cache_implementation": "static", "max_cache_len": CONTEXT_TOKENS}
            stats.started = time.perf_counter()
            with torch.inference_mode():
                self.model.generate(
                    **inputs,
                    **kwargs,
                    streamer=_Timed(streamer, stats),
                    stopping_criteria=StoppingCriteriaList([_StopFlag(stop)]),
                )
        except BaseException:
            if streamer is not None:
                streamer.end()  # the reader must not wait for text that will never come
            raise
        finally:
            stats.cancelled = stop.is_set()
            stats.done.set()

    def warm_up(self, max_new_tokens: int) -> float:
        """A first generation (on a GPU it compiles the static-cache graph); once per model. Seconds."""
        with self._warm_lock:
            if self.warm_up_s is None:
                started = time.perf_counter()
                prompt = Prompt("You are a dermatology intake assistant.", [_warm_up_message()])
                runs = 2 if self.static_cache else 1  # the second call records the CUDA graphs
                for _ in range(runs):
                    stats = ReplyStats()
                    self.executor.submit(
                        self.generate, prompt, max_new_tokens, None, threading.Event(), stats
                    ).result()
                self.warm_up_s = time.perf_counter() - started
                log.info(
                    "MedGemma warmed up on %s in %.1f s (static cache: %s, %d tokens/s)",
                    self.device,
                    self.warm_up_s,
                    self.static_cache,
                    stats.tokens_per_s,
                )
        return self.warm_up_s

    def _inputs(self, prompt: Prompt, max_new_tokens: int) -> Any:
        """Tokenised chat with images; the oldest turns are dropped until prompt + reply fit the context."""
        messages = list(prompt.messages)
        while True:
            inputs = self.processor.apply_chat_template(
                chat_messages(Prompt(prompt.system, messages)),
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            )
            if inputs["input_ids"].shape[1] + max_new_tokens <= CONTEXT_TOKENS or len(messages) < 3:
                break
            messages = messages[2:]  # one patient + one agent turn; the list still starts with the patient
        return inputs.to(self.device, dtype=self.dtype)


class _StopFlag(StoppingCriteria):
    """A stopping criterion, checked after every token: stop as soon as the reply is closed."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.full(
            (input_ids.shape[0],), self._stop.is_set(), dtype=torch.bool, device=input_ids.device
        )


class _Timed(BaseStreamer):
    """Records when each new token reaches the host (after the device finished it), then passes it on."""

    def __init__(self, inner: Any, stats: ReplyStats) -> None:
        self._inner, self._stats, self._prompt = inner, stats, True

    def put(self, value: Any) -> None:
        if self._prompt:  # generate() hands over the prompt first
            self._prompt = False
        else:
            self._stats.token_times.append(time.perf_counter())
        if self._inner is not None:
            self._inner.put(value)

    def end(self) -> None:
        if self._inner is not None:
            self._inner.end()


def chat_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The prompt in transformers' multimodal chat format (images decoded for the processor)."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": prompt.system}]}
    ]
    for message in prompt.messages:
        content: list[dict[str, Any]] = [
            {"type": "image", "image": Image.open(io.BytesIO(jpeg)).convert("RGB")} for jpeg in message.images
        ]
        content.append({"type": "text", "text": message.text})
        messages.append({"role": message.role, "content": content})
    return messages


def _warm_up_message() -> Message:
    frame = io.BytesIO()
    Image.new("RGB", (640, 480), (190, 140, 120)).save(frame, format="JPEG")
    return Message("user", WARM_UP_TEXT, (frame.getvalue(),))


# --- one model per process and directory ---------------------------------------------------

_MODELS: dict[tuple[Path, str], LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def load_model(path: Path, device: str) -> LoadedModel:
    """The processor and model in ``path`` on ``device``, loaded on first use and shared afterwards."""
    key = (path.resolve(), device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = _load(path, device)
        return _MODELS[key]


def register_model(path: Path, model: Any, device: str, *, static_cache: bool | None = None) -> LoadedModel:
    """Share a model built in memory (benchmarks) as if loaded from ``path`` (the processor is)."""
    loaded = LoadedModel(
        AutoProcessor.from_pretrained(path, local_files_only=True),
        model.eval(),
        device,
        static_cache=static_cache,
    )
    with _MODELS_LOCK:
        _MODELS[(path.resolve(), device)] = loaded
    return loaded


def _load(path: Path, device: str) -> LoadedModel:
    started = time.perf_counter()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load MedGemma from {path} (incomplete download?): {reason}") from exc
    model = model.to(device).eval()
    log.info(
        "MedGemma loaded from %s on %s (%s) in %.1f s", path, device, dtype, time.perf_counter() - started
    )
    return LoadedModel(processor, model, device)


# --- the backend ---------------------------------------------------------------------------


class MedGemmaBackend(BrainBackend):
    """One session's brain on the shared in-process MedGemma."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model = load_model(resolve_model_dir(settings), resolve_device(settings.llm.device))
        self.last_stats: ReplyStats | None = None

    @property
    def loaded(self) -> LoadedModel:
        return self._model

    def greeting(self) -> str:
        return greeting(self._settings.safety.emergency_number)

    def model_id(self) -> str:
        """The directory the weights were loaded from (transformers records it on the model)."""
        return str(self._model.model.name_or_path)

    def warm_up(self) -> float:
        """Blocking: the first generation (and on a GPU the compilation), once per process. Seconds."""
        return self._model.warm_up(self._settings.llm.max_new_tokens)

    async def reply(self, request: BrainRequest) -> AsyncIterator[str]:
        prompt = build_prompt(request, emergency_number=self._settings.safety.emergency_number)
        streamer = _LoopStreamer(self._model.processor.tokenizer)
        stop = threading.Event()
        stats = self.last_stats = ReplyStats()
        work = self._model.executor.submit(
            self._model.generate, prompt, self._settings.llm.max_new_tokens, streamer, stop, stats
        )
        work.add_done_callback(_log_failure)
        try:
            async for piece in streamer:
                if piece:
                    yield piece
            await asyncio.wrap_future(work)  # a generation error surfaces here, after any partial text
        finally:
            stop.set()
        log.debug(
            "MedGemma reply: %d prompt tokens, %d new, %.0f tokens/s",
            stats.prompt_tokens,
            stats.new_tokens,
            stats.tokens_per_s,
        )


def _log_failure(work: Future) -> None:
    if not work.cancelled() and work.exception() is not None:
        log.error("MedGemma generation failed: %s", type(work.exception()).__name__)


class _LoopStreamer(AsyncTextIteratorStreamer):
    """Decoded text into the event loop, silent once the loop is gone (the session ended)."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        try:
            super().on_finalized_text(text, stream_end)
        except RuntimeError:  # the event loop is closed
            pass
