"""The voice and the listening models, loaded once per process and shared by every session.

Pipecat's services each load their own model: a Piper voice (~100 MB resident), a Silero VAD
and a Smart Turn ONNX session per patient. A box then holds as many copies as it has patients,
and each new session waits for its loads. Here each model is loaded once per process and every
session's processor uses it; what belongs to one conversation stays in that session's processor:

- **Piper**: one ``PiperVoice`` per voice model file (``shared_piper_voice``), its ONNX session
  without a memory arena (``_load_voice`` says why). Its synthesis is
  thread-safe (espeak-ng's phonemizer runs under piper's own lock, the ONNX session's ``run`` is
  thread-safe, nothing else is written), so no per-voice lock. Sessions synthesise on one bounded
  pool of ``PIPER_WORKERS`` threads: more sessions speaking at once queue for a worker instead
  of each taking a thread (pipecat's ``asyncio.to_thread``) and the cores with it. The resampler
  and the audio context stay in each session's ``SharedPiperTTSService``.
- **Silero VAD**: one ``onnxruntime.InferenceSession`` (``silero_session``). Pipecat keeps the
  model's recurrent state and audio context in its ``SileroOnnxModel`` object, so the session
  is shared and that object is per session (``SharedSileroVAD``): two patients speaking at
  once never mix their states.
- **Smart Turn v3**: one ``InferenceSession`` (``smart_turn_session``); the feature extractor is
  a pure function. The audio buffer of the turn stays in each ``SharedSmartTurn``.

``InferenceSession.run`` may be called from several threads at once (onnxruntime's contract).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TypeVar

import onnxruntime as ort
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams
from pipecat.frames.frames import ErrorFrame, Frame
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.tts_service import TTSService
from pipecat.utils.tracing.service_decorators import traced_tts
from piper import AudioChunk, PiperVoice
from piper.config import PiperConfig

log = logging.getLogger(__name__)
# Sentences synthesised at once in the process, all sessions together: a third session speaking
# waits for a worker rather than taking more of the two cores Whisper and the VADs also need.
PIPER_WORKERS = 2
_T = TypeVar("_T")


def shared_piper_voice(model_path: Path) -> PiperVoice:
    """The process's Piper voice for this model file (loaded on first use)."""
    return _load_voice(model_path.resolve())


@lru_cache(maxsize=4)
def _load_voice(model_path: Path) -> PiperVoice:
    """``PiperVoice.load`` with the ONNX session made here, without onnxruntime's CPU memory arena.

    The arena keeps, for the life of the process, the largest memory any synthesis ever needed:
    measured in the soak (``python -m tools.soak``), two long sentences synthesised at once grew
    it to a 512 MB region that was never given back (a quarter of the server's resident memory).
    Without it each synthesis frees what it used; a sentence costs about 5 % more time.
    """
    log.info("loading the Piper voice %s (once per process)", model_path.name)
    config = json.loads(Path(f"{model_path}.json").read_text(encoding="utf-8"))
    options = _set(ort.SessionOptions(), enable_cpu_mem_arena=False)
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(config=PiperConfig.from_dict(config), session=session)


@lru_cache(maxsize=1)
def synthesis_pool() -> ThreadPoolExecutor:
    """The threads every session's Piper synthesis runs on (``PIPER_WORKERS``)."""
    return ThreadPoolExecutor(max_workers=PIPER_WORKERS, thread_name_prefix="piper")


def _bundled(package: str, name: str) -> str:
    return str(resources.files(package).joinpath(name))


def _set(target: _T, **attributes: object) -> _T:
    """``target`` with these attributes set: ONNX options, or what a pipecat ``__init__`` sets
    besides the model it loads (pipecat's code reads them, ours does not)."""
    for name, value in attributes.items():
        setattr(target, name, value)
    return target


@lru_cache(maxsize=1)
def silero_session() -> ort.InferenceSession:
    """Silero VAD's ONNX session, with pipecat's options (one thread: a window is 32 ms of audio)."""
    return ort.InferenceSession(
        _bundled("pipecat.audio.vad.data", "silero_vad.onnx"),
        providers=["CPUExecutionProvider"],
        sess_options=_set(ort.SessionOptions(), inter_op_num_threads=1, intra_op_num_threads=1),
    )


@lru_cache(maxsize=1)
def smart_turn_session() -> ort.InferenceSession:
    """Smart Turn v3.2's ONNX session, with the options pipecat's analyzer gives it."""
    options = _set(
        ort.SessionOptions(),
        execution_mode=ort.ExecutionMode.ORT_SEQUENTIAL,
        inter_op_num_threads=1,
        intra_op_num_threads=1,
        graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    )
    return ort.InferenceSession(
        _bundled("pipecat.audio.turn.smart_turn.data", "smart-turn-v3.2-cpu.onnx"), sess_options=options
    )


class _SileroState(SileroOnnxModel):
    """Pipecat's Silero model object on the shared ONNX session: it holds one stream's state."""

    def __init__(self, session: ort.InferenceSession) -> None:  # no super(): it would load a session
        self.session = session
        _set(self, sample_rates=[8000, 16000])
        self.reset_states()


class SharedSileroVAD(SileroVADAnalyzer):
    """Pipecat's Silero analyzer, its model state its own, on the process's ONNX session."""

    def __init__(self, *, params: VADParams | None = None) -> None:
        # SileroVADAnalyzer.__init__ minus the model load.
        VADAnalyzer.__init__(self, params=params)
        self._model = _SileroState(silero_session())
        _set(self, _windows_since_reset=0, _low_confidence_windows=0)


class SharedSmartTurn(LocalSmartTurnAnalyzerV3):
    """Pipecat's Smart Turn v3 analyzer, its turn's audio its own, on the process's ONNX session.

    Unlike pipecat's, it never writes the patient's audio to disk (``PIPECAT_SMART_TURN_LOG_DATA``).
    """

    def __init__(self) -> None:
        # LocalSmartTurnAnalyzerV3.__init__ minus the model load.
        BaseSmartTurn.__init__(self)
        _set(self, _log_data=False)
        self._session = smart_turn_session()


class SharedPiperTTSService(PiperTTSService):
    """Pipecat's Piper service speaking with the process's voice, on the process's synthesis pool."""

    def __init__(self, *, voice_model: Path, **kwargs: object) -> None:
        # PiperTTSService.__init__ minus the download and the voice load.
        settings = self.Settings(model=None, voice=voice_model.stem, language=None)
        TTSService.__init__(self, push_start_frame=True, push_stop_frames=True, settings=settings, **kwargs)
        self._voice = shared_piper_voice(voice_model)

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Pipecat's ``run_tts``, each sentence's synthesis on the shared pool."""
        try:
            await self.start_tts_usage_metrics(text)
            voice = self._voice
            async for frame in self._stream_audio_frames_from_iterator(
                _on_pool(voice.synthesize(text)),
                in_sample_rate=voice.config.sample_rate,
                context_id=context_id,
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except Exception as exc:  # noqa: BLE001 - reported as pipecat's service does
            log.error("Piper synthesis failed (%s)", type(exc).__name__)
            yield ErrorFrame(error=f"Piper failed: {type(exc).__name__}", exception=exc)
        finally:
            await self.stop_ttfb_metrics()


async def _on_pool(chunks: Iterable[AudioChunk]) -> AsyncIterator[bytes]:
    """Piper's chunks (one per sentence), each computed on the synthesis pool."""
    loop = asyncio.get_running_loop()
    iterator = iter(chunks)
    while (chunk := await loop.run_in_executor(synthesis_pool(), next, iterator, None)) is not None:
        yield chunk.audio_int16_bytes
